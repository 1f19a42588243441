//! The testbed's behaviour: how slow and how unreliable it is. A profile is a TOML file; every knob has a
//! default (the `mild` profile), and every random draw made under it comes from the one seed.
//!
//! Shipped profiles (`reference-testbed/profiles/`): `mild` (the embedded demo: most things work, quickly), `paper`
//! (what the Emulab/PlanetLab paper reported: an hour-long asynchronous guarantee, a synchronous create that fails
//! 23% of the time and takes 1–15 minutes, steady churn) and `harsh` (for tests: everything fails often).

use serde::{Deserialize, Serialize};

/// The defaults are the `mild` profile (a test checks the shipped file says the same).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Profile {
    pub instantiation: Instantiation,
    pub node_manager: NodeManager,
    pub churn: Churn,
    pub lease: Lease,
    pub api: Api,
    pub world: WorldShape,
    pub ssh: Ssh,
}

/// The asynchronous path: after `AddSliceToNodes`, a sliver comes up after a long-tailed delay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Instantiation {
    /// Median delay, testbed seconds (log-normal).
    pub median_s: f64,
    /// Log-normal shape: larger means a longer tail.
    pub sigma: f64,
    /// The testbed's guarantee: no sliver takes longer (PlanetLab promised an hour).
    pub max_s: f64,
    /// Chance that a sliver never comes up on an otherwise healthy node.
    pub fail_probability: f64,
}

/// The synchronous path through a node's manager (`Create`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeManager {
    pub create_fail_probability: f64,
    pub create_min_s: f64,
    pub create_max_s: f64,
}

/// Node churn, as rates per node per testbed hour, applied in steps of `step_s`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Churn {
    pub step_s: f64,
    /// A booted node goes down (boot state `dbg`, stops answering).
    pub down_per_hour: f64,
    /// A down node comes back.
    pub up_per_hour: f64,
    /// A node leaves the testbed (gone from `GetNodes`).
    pub leave_per_hour: f64,
    /// A node that left comes back (often with a new identity).
    pub join_per_hour: f64,
    /// A node's IP, hostname or node id (sometimes several) change.
    pub identity_change_per_hour: f64,
    /// Fraction of nodes down at start.
    pub initially_down: f64,
}

/// Lease renewals: how often the testbed grants less than asked, and by how much.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Lease {
    pub skew_probability: f64,
    pub skew_max_hours: f64,
}

/// API-level faults and the API generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Api {
    /// Chance per call of an XML-RPC fault (code 106, a database error) instead of an answer.
    pub fault_probability: f64,
    /// Chance per call of an HTTP 503.
    pub http_5xx_probability: f64,
    /// Chance per call that the answer is held back for `timeout_delay_s` real seconds.
    pub timeout_probability: f64,
    pub timeout_delay_s: f64,
    /// `node-manager` (both paths) or `async-only` (no node managers: the older generation).
    pub generation: Generation,
    /// After this many testbed seconds, switch to the other generation (0: never).
    pub switch_after_s: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Generation {
    AsyncOnly,
    NodeManager,
}

/// The simulated slivers' SSH endpoints (see `crate::sliver`): how slow and how unreliable each bring-up
/// command is. Slivers backed by a real `sshd` are not affected.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Ssh {
    /// Testbed seconds each command takes before it answers (a slow sliver), slept on the testbed clock.
    pub exec_delay_s: f64,
    /// Chance that a command fails (exit status 255, `simulated failure` on stderr) without doing anything;
    /// drawn from the seed, the slice, the node and how many commands the sliver has run.
    pub exec_fail_probability: f64,
}

/// Which world: the real PlanetLab one (`nodes = 0`) or a generated one of `nodes` nodes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorldShape {
    pub nodes: usize,
}

impl Default for Instantiation {
    fn default() -> Self {
        Self { median_s: 60.0, sigma: 1.0, max_s: 3600.0, fail_probability: 0.01 }
    }
}

impl Default for NodeManager {
    fn default() -> Self {
        Self { create_fail_probability: 0.05, create_min_s: 20.0, create_max_s: 120.0 }
    }
}

impl Default for Churn {
    fn default() -> Self {
        Self {
            step_s: 300.0,
            down_per_hour: 0.001,
            up_per_hour: 0.2,
            leave_per_hour: 0.0001,
            join_per_hour: 0.05,
            identity_change_per_hour: 0.0002,
            initially_down: 0.05,
        }
    }
}

impl Default for Lease {
    fn default() -> Self {
        Self { skew_probability: 0.05, skew_max_hours: 24.0 }
    }
}

impl Default for Api {
    fn default() -> Self {
        Self {
            fault_probability: 0.0,
            http_5xx_probability: 0.0,
            timeout_probability: 0.0,
            timeout_delay_s: 30.0,
            generation: Generation::NodeManager,
            switch_after_s: 0.0,
        }
    }
}

const MILD: &str = include_str!("../profiles/mild.toml");
const PAPER: &str = include_str!("../profiles/paper.toml");
const HARSH: &str = include_str!("../profiles/harsh.toml");

impl Profile {
    pub fn mild() -> Self {
        Self::parse(MILD).expect("the shipped mild profile parses")
    }

    pub fn paper() -> Self {
        Self::parse(PAPER).expect("the shipped paper profile parses")
    }

    pub fn harsh() -> Self {
        Self::parse(HARSH).expect("the shipped harsh profile parses")
    }

    /// A shipped profile by name, or a TOML file by path.
    pub fn load(name_or_path: &str) -> Result<Self, String> {
        match name_or_path {
            "mild" => Ok(Self::mild()),
            "paper" => Ok(Self::paper()),
            "harsh" => Ok(Self::harsh()),
            path => {
                let text =
                    std::fs::read_to_string(path).map_err(|e| format!("cannot read profile {path}: {e}"))?;
                Self::parse(&text).map_err(|e| format!("profile {path}: {e}"))
            }
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let profile: Profile = toml::from_str(text).map_err(|e| e.to_string())?;
        profile.validate()?;
        Ok(profile)
    }

    /// Checks every knob, naming the first bad one: probabilities lie in [0, 1], durations and rates are
    /// finite and ≥ 0 (and bounded, so that no duration overflows when it is slept), ranges are ordered.
    pub fn validate(&self) -> Result<(), String> {
        let (i, nm, c, l, a) = (&self.instantiation, &self.node_manager, &self.churn, &self.lease, &self.api);
        let ssh = &self.ssh;
        // Each knob's allowed values (a range never holds NaN; a bounded one never holds infinity) and how
        // they are described.
        let probability = || (0.0..=1.0, "a probability from 0 to 1".to_owned());
        let duration = || (0.0..=MAX_DURATION, format!("a finite number ≥ 0 (at most {MAX_DURATION})"));
        let rate = || (0.0..=f64::MAX, "a finite rate ≥ 0 per hour".to_owned());
        let positive =
            |most: f64| (f64::MIN_POSITIVE..=most, format!("a finite number > 0 (at most {most})"));
        // Churn is applied step by step under the state lock: a tiny step would make every call loop.
        let step = (
            MIN_CHURN_STEP_S..=MAX_DURATION,
            format!("a finite number of seconds from {MIN_CHURN_STEP_S} to {MAX_DURATION}"),
        );
        let knobs = [
            ("instantiation.fail_probability", i.fail_probability, probability()),
            ("node_manager.create_fail_probability", nm.create_fail_probability, probability()),
            ("churn.initially_down", c.initially_down, probability()),
            ("lease.skew_probability", l.skew_probability, probability()),
            ("api.fault_probability", a.fault_probability, probability()),
            ("api.http_5xx_probability", a.http_5xx_probability, probability()),
            ("api.timeout_probability", a.timeout_probability, probability()),
            ("ssh.exec_fail_probability", ssh.exec_fail_probability, probability()),
            ("instantiation.max_s", i.max_s, duration()),
            ("node_manager.create_min_s", nm.create_min_s, duration()),
            ("node_manager.create_max_s", nm.create_max_s, duration()),
            ("lease.skew_max_hours", l.skew_max_hours, duration()),
            ("api.timeout_delay_s", a.timeout_delay_s, duration()),
            ("api.switch_after_s", a.switch_after_s, duration()),
            ("ssh.exec_delay_s", ssh.exec_delay_s, duration()),
            ("churn.down_per_hour", c.down_per_hour, rate()),
            ("churn.up_per_hour", c.up_per_hour, rate()),
            ("churn.leave_per_hour", c.leave_per_hour, rate()),
            ("churn.join_per_hour", c.join_per_hour, rate()),
            ("churn.identity_change_per_hour", c.identity_change_per_hour, rate()),
            ("instantiation.median_s", i.median_s, positive(MAX_DURATION)),
            ("instantiation.sigma", i.sigma, positive(10.0)),
            ("churn.step_s", c.step_s, step),
        ];
        for (name, value, (allowed, what)) in knobs {
            if !allowed.contains(&value) {
                return Err(format!("{name} must be {what}, not {value}"));
            }
        }
        let api_total = a.fault_probability + a.http_5xx_probability + a.timeout_probability;
        if api_total > 1.0 + 1e-9 {
            return Err(format!(
                "api.fault_probability + api.http_5xx_probability + api.timeout_probability must not exceed 1, \
                 not {api_total}"
            ));
        }
        if nm.create_min_s > nm.create_max_s {
            return Err(format!(
                "node_manager.create_min_s ({}) must not exceed node_manager.create_max_s ({})",
                nm.create_min_s, nm.create_max_s
            ));
        }
        if self.world.nodes > MAX_WORLD_NODES {
            return Err(format!("world.nodes must be at most {MAX_WORLD_NODES}, not {}", self.world.nodes));
        }
        Ok(())
    }
}

/// The longest duration a profile may name, in seconds (ten years): every delay stays representable.
pub const MAX_DURATION: f64 = 10.0 * 365.0 * 86400.0;
/// The shortest churn step, in testbed seconds.
pub const MIN_CHURN_STEP_S: f64 = 1.0;
/// The largest generated world.
pub const MAX_WORLD_NODES: usize = 100_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_profiles_parse_and_differ() {
        let (mild, paper, harsh) = (Profile::mild(), Profile::paper(), Profile::harsh());
        assert_eq!(mild, Profile::default());
        assert!((paper.node_manager.create_fail_probability - 0.23).abs() < 1e-9);
        assert_eq!(paper.instantiation.max_s, 3600.0);
        assert!(harsh.api.fault_probability > mild.api.fault_probability);
    }

    #[test]
    fn bad_profiles_name_the_knob() {
        let err = Profile::parse("[api]\nfault_probability = 2\n").unwrap_err();
        assert!(err.contains("api.fault_probability"), "{err}");
        let err = Profile::parse("[api]\nfault_probabilty = 0.1\n").unwrap_err();
        assert!(err.contains("fault_probabilty"), "{err}");
        let err = Profile::load("/no/such/profile.toml").unwrap_err();
        assert!(err.contains("/no/such/profile.toml"), "{err}");
    }

    /// Every knob is checked at load, and the message names it (a negative or NaN `api.timeout_delay_s`
    /// used to panic in `Duration::from_secs_f64` on every delayed call).
    #[test]
    fn every_knob_is_validated() {
        let cases: &[(&str, &str, &str)] = &[
            ("api", "timeout_delay_s = -1.0", "api.timeout_delay_s must be a finite number ≥ 0"),
            ("api", "timeout_delay_s = nan", "api.timeout_delay_s"),
            ("api", "timeout_delay_s = inf", "api.timeout_delay_s"),
            ("api", "timeout_delay_s = 1e300", "api.timeout_delay_s"),
            ("api", "switch_after_s = -5.0", "api.switch_after_s"),
            ("api", "fault_probability = nan", "api.fault_probability"),
            ("api", "http_5xx_probability = -0.1", "api.http_5xx_probability"),
            ("api", "timeout_probability = 1.5", "api.timeout_probability"),
            ("api", "fault_probability = 0.6\nhttp_5xx_probability = 0.6", "must not exceed 1"),
            ("instantiation", "median_s = 0.0", "instantiation.median_s"),
            ("instantiation", "median_s = nan", "instantiation.median_s"),
            ("instantiation", "sigma = 0.0", "instantiation.sigma"),
            ("instantiation", "sigma = -1.0", "instantiation.sigma"),
            ("instantiation", "max_s = -1.0", "instantiation.max_s"),
            ("instantiation", "fail_probability = 1.01", "instantiation.fail_probability"),
            ("node_manager", "create_fail_probability = -1.0", "node_manager.create_fail_probability"),
            ("node_manager", "create_min_s = -1.0", "node_manager.create_min_s"),
            ("node_manager", "create_max_s = inf", "node_manager.create_max_s"),
            (
                "node_manager",
                "create_min_s = 100.0\ncreate_max_s = 50.0",
                "must not exceed node_manager.create_max_s",
            ),
            ("churn", "step_s = 0.0", "churn.step_s"),
            ("churn", "step_s = 0.001", "churn.step_s"),
            ("churn", "down_per_hour = -0.1", "churn.down_per_hour"),
            ("churn", "up_per_hour = nan", "churn.up_per_hour"),
            ("churn", "leave_per_hour = inf", "churn.leave_per_hour"),
            ("churn", "join_per_hour = -1.0", "churn.join_per_hour"),
            ("churn", "identity_change_per_hour = -1.0", "churn.identity_change_per_hour"),
            ("churn", "initially_down = 2.0", "churn.initially_down"),
            ("lease", "skew_probability = -0.5", "lease.skew_probability"),
            ("lease", "skew_max_hours = -1.0", "lease.skew_max_hours"),
            ("world", "nodes = 100000000", "world.nodes"),
            ("ssh", "exec_delay_s = -1.0", "ssh.exec_delay_s"),
            ("ssh", "exec_fail_probability = 1.5", "ssh.exec_fail_probability"),
        ];
        for (table, knob, want) in cases {
            let err = Profile::parse(&format!("[{table}]\n{knob}\n")).unwrap_err();
            assert!(err.contains(want), "[{table}] {knob}: {err}");
        }
        let err = Profile::parse("[api]\ntimeout_delay_s = -1.0\n").unwrap_err();
        assert_eq!(
            err,
            format!("api.timeout_delay_s must be a finite number ≥ 0 (at most {MAX_DURATION}), not -1")
        );
        // The edges are allowed.
        Profile::parse("[api]\ntimeout_delay_s = 0.0\nfault_probability = 1.0\n[node_manager]\ncreate_min_s = 5.0\ncreate_max_s = 5.0\n").unwrap();
    }
}
