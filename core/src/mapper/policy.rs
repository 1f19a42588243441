//! Operator-set policy: admission thresholds (hard filters applied before any model is built) and the
//! weights of the objective's node terms. Kept apart from the world and the topology because neither the
//! testbed nor the researcher decides them. JSON: the `--policy` file of `portolan map`; every field optional.

use super::world::CandidateNode;
use model::error::{AppError, AppResult};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    pub admission: Admission,
    pub weights: Weights,
}

/// A node must meet every threshold to be a candidate at all. A threshold that is `None` (JSON `null`) is
/// off; one that is set is never met by a node whose metric is unknown.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Admission {
    /// Highest load average.
    pub max_load: Option<f64>,
    /// Least free disk, in percent.
    pub min_disk_free_pct: Option<f64>,
    /// Least free memory, in MB.
    pub min_memory_free_mb: Option<f64>,
    /// Oldest acceptable node metrics, in seconds.
    pub max_metric_age_s: Option<f64>,
    /// Oldest acceptable path measurement, in seconds; older paths count as unmeasured. Off: any age.
    pub max_path_age_s: Option<f64>,
    /// Nodes with at least this many recent failures are excluded (fewer are penalised; 0 disables).
    pub exclude_after_failures: u32,
}

impl Default for Admission {
    fn default() -> Self {
        Self {
            max_load: Some(4.0),
            min_disk_free_pct: Some(10.0),
            min_memory_free_mb: Some(256.0),
            max_metric_age_s: Some(900.0),
            max_path_age_s: Some(3_600.0),
            exclude_after_failures: 2,
        }
    }
}

/// Weights of the node and site terms of the objective (the link terms are weighted per link).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Weights {
    /// Per unit of load / max_load.
    pub load: f64,
    /// Per unit of (1 − reliability).
    pub unreliability: f64,
    /// Per recent failure.
    pub recent_failure: f64,
    /// Per node beyond the first at one site.
    pub site_extra: f64,
    /// Multiplies every link's deviation terms.
    pub link: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Self { load: 1.0, unreliability: 2.0, recent_failure: 1.0, site_extra: 0.5, link: 1.0 }
    }
}

/// Why a node failed admission, for explanations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rejection {
    Load,
    Disk,
    Memory,
    MetricAge,
    Failures,
    /// A threshold is set on a metric the node has not reported.
    Unknown,
}

/// `value` is off (`None`) or a number, shown in messages.
fn shown(value: Option<f64>) -> String {
    value.map_or_else(|| "off".to_owned(), |v| v.to_string())
}

impl Rejection {
    pub fn describe(self, a: &Admission) -> String {
        match self {
            Rejection::Load => format!("load above {}", shown(a.max_load)),
            Rejection::Disk => format!("free disk below {}%", shown(a.min_disk_free_pct)),
            Rejection::Memory => format!("free memory below {} MB", shown(a.min_memory_free_mb)),
            Rejection::MetricAge => format!("metrics older than {} s", shown(a.max_metric_age_s)),
            Rejection::Failures => format!("{} or more recent failures", a.exclude_after_failures),
            Rejection::Unknown => "metrics a threshold needs are unknown".to_owned(),
        }
    }
}

/// Whether `value` passes the threshold `limit` (`ok` compares them): an unset threshold passes anything,
/// a set one never passes an unknown value.
fn passes(
    limit: Option<f64>,
    value: Option<f64>,
    ok: fn(f64, f64) -> bool,
    why: Rejection,
) -> Result<(), Rejection> {
    match (limit, value) {
        (None, _) => Ok(()),
        (Some(_), None) => Err(Rejection::Unknown),
        (Some(limit), Some(value)) if ok(value, limit) => Ok(()),
        _ => Err(why),
    }
}

impl Admission {
    /// The first threshold `node` misses, if any.
    pub fn check(&self, node: &CandidateNode) -> Option<Rejection> {
        let all = || -> Result<(), Rejection> {
            passes(self.max_load, node.load, |v, l| v <= l, Rejection::Load)?;
            passes(self.min_disk_free_pct, node.disk_free_pct, |v, l| v >= l, Rejection::Disk)?;
            passes(self.min_memory_free_mb, node.memory_free_mb, |v, l| v >= l, Rejection::Memory)?;
            passes(self.max_metric_age_s, node.metric_age_s, |v, l| v <= l, Rejection::MetricAge)?;
            if self.exclude_after_failures > 0 && node.recent_failures >= self.exclude_after_failures {
                return Err(Rejection::Failures);
            }
            Ok(())
        };
        all().err()
    }

    /// Whether a path measured `age_s` ago counts as measured.
    pub fn path_fresh(&self, age_s: f64) -> bool {
        self.max_path_age_s.is_none_or(|max| age_s <= max)
    }

    /// Checks every threshold; the error names the field as `prefix` + its name (`admission.max_load` in a
    /// policy file, `max_load` in the API, whose body is the thresholds alone).
    pub fn validate_as(&self, prefix: &str) -> AppResult<()> {
        let field = |name: &str| format!("{prefix}{name}");
        let checks = [
            ("max_load", self.max_load),
            ("min_disk_free_pct", self.min_disk_free_pct),
            ("min_memory_free_mb", self.min_memory_free_mb),
            ("max_metric_age_s", self.max_metric_age_s),
            ("max_path_age_s", self.max_path_age_s),
        ];
        for (name, value) in checks {
            let f = field(name);
            if let Some(v) = value
                && !(0.0..=1e12).contains(&v)
            {
                return Err(AppError::invalid(&f, format!("{f} must be a number ≥ 0 (or off), not {v}")));
            }
        }
        if self.max_load == Some(0.0) {
            let f = field("max_load");
            return Err(AppError::invalid(&f, format!("{f} must be above 0")));
        }
        if let Some(pct) = self.min_disk_free_pct
            && pct > 100.0
        {
            let f = field("min_disk_free_pct");
            return Err(AppError::invalid(&f, format!("{f} is a percentage (0–100), not {pct}")));
        }
        if self.exclude_after_failures > 1000 {
            let f = field("exclude_after_failures");
            return Err(AppError::invalid(&f, format!("{f} must be at most 1000 (0: off)")));
        }
        Ok(())
    }
}

impl Policy {
    pub fn validate(&self) -> AppResult<()> {
        self.admission.validate_as("admission.")?;
        let checks = [
            ("weights.load", self.weights.load),
            ("weights.unreliability", self.weights.unreliability),
            ("weights.recent_failure", self.weights.recent_failure),
            ("weights.site_extra", self.weights.site_extra),
            ("weights.link", self.weights.link),
        ];
        for (field, value) in checks {
            if !(value.is_finite() && value >= 0.0) {
                return Err(AppError::invalid(field, format!("{field} must be a number ≥ 0, not {value}")));
            }
        }
        Ok(())
    }

    /// The node terms of the objective for placing a sliver on `node`: load, unreliability, failures. Load
    /// counts relative to the load threshold (4 when it is off); an unknown load counts as that threshold.
    pub fn node_terms(&self, node: &CandidateNode) -> [f64; 3] {
        let w = &self.weights;
        let max_load = self.admission.max_load.unwrap_or(4.0);
        [
            w.load * node.load.unwrap_or(max_load) / max_load,
            w.unreliability * (1.0 - node.reliability),
            w.recent_failure * f64::from(node.recent_failures),
        ]
    }
}
