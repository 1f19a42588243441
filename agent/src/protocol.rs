//! What crosses the wire between an agent and the portal. Every request carries the sliver's credential as
//! `Authorization: Bearer <credential>` (see [`Credential`]); the portal answers only for that sliver.
//!
//! - `GET /agent/v1/manifest` → [`Manifest`]: what the sliver should hold;
//! - `POST /agent/v1/heartbeat` with a [`Heartbeat`] → [`HeartbeatReply`]: whether the manifest changed, and
//!   when to beat next.
//!
//! Heartbeats are small (a few hundred bytes): the portal refuses bodies over [`MAX_HEARTBEAT_BYTES`].

use serde::{Deserialize, Serialize};
use std::fmt;

/// The largest heartbeat body the portal accepts.
pub const MAX_HEARTBEAT_BYTES: usize = 16 * 1024;
/// How much of the startup command's output a heartbeat carries (its last bytes).
pub const OUTPUT_TAIL_BYTES: usize = 2 * 1024;
/// The prefix of every sliver credential.
pub const CREDENTIAL_PREFIX: &str = "pslv_";

/// A sliver's credential: `pslv_<sliver id>_<64 hex digits of secret>`. The portal stores only the secret's
/// SHA-256 (the secret is 256 random bits, so a fast hash is enough, as for API tokens); the id lets it find
/// the row without a scan.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub sliver_id: i64,
    pub secret: String,
}

impl Credential {
    /// A fresh credential for `sliver_id`.
    pub fn generate(sliver_id: i64) -> Self {
        Self { sliver_id, secret: hex::encode(rand::random::<[u8; 32]>()) }
    }

    /// Parses `pslv_<id>_<secret>`; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let rest = text.strip_prefix(CREDENTIAL_PREFIX)?;
        let (id, secret) = rest.split_once('_')?;
        let sliver_id = id.parse::<i64>().ok().filter(|id| *id > 0)?;
        let well_formed = secret.len() == 64 && secret.bytes().all(|b| b.is_ascii_hexdigit());
        well_formed.then(|| Self { sliver_id, secret: secret.to_ascii_lowercase() })
    }

    /// The SHA-256 of the secret, hex: what the portal stores and compares.
    pub fn secret_hash(&self) -> String {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(self.secret.as_bytes()))
    }

    /// The credential as the agent sends it.
    pub fn expose(&self) -> String {
        format!("{CREDENTIAL_PREFIX}{}_{}", self.sliver_id, self.secret)
    }
}

/// Never shows the secret.
impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential").field("sliver_id", &self.sliver_id).field("secret", &"…").finish()
    }
}

/// What a sliver should hold. Applying it is idempotent: applying the same manifest twice changes nothing
/// the second time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Changes whenever anything below changes (a digest of the rest): heartbeats compare it.
    pub version: String,
    /// The slice (the sliver's login) and node (hostname) the manifest is for.
    pub slice: String,
    pub node: String,
    /// The people who may log in, each with their SSH public keys (OpenSSH form). A sliver is one login (the
    /// slice's), so every account's keys go to its authorized keys; the names are kept for the record.
    pub accounts: Vec<Account>,
    /// What to install before the startup command runs, in order.
    pub software: Vec<Software>,
    /// Run once the software is in place, again whenever it (or the software) changes.
    pub startup: Option<Startup>,
    /// How often to heartbeat, in seconds.
    pub heartbeat_s: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub name: String,
    pub keys: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Software {
    /// A tarball (gzip'd or not) fetched from `url`, checked against `sha256`, unpacked under `target_dir`
    /// (relative to the sliver's home; never outside it).
    Tarball { url: String, sha256: String, target_dir: String },
    /// A package of the node's distribution.
    Package { name: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Startup {
    /// Run with `sh -c` in the sliver's home.
    pub command: String,
}

/// The startup command's state, as the agent last saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum StartupState {
    /// The manifest has no startup command.
    #[default]
    None,
    /// Waiting for the software, or not started yet.
    Pending,
    Running,
    /// Exited with `code` (`None`: killed by a signal); `output_tail` is the last bytes of its output.
    Exited {
        code: Option<i32>,
        output_tail: String,
    },
    /// Could not be started (or its software could not be installed): `error` says why.
    Failed {
        error: String,
    },
}

/// The node's load as the sliver sees it. Every field may be unknown (null).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct Metrics {
    /// Unix load average over one minute.
    pub load1: Option<f64>,
    pub memory_total_mb: Option<f64>,
    pub memory_free_mb: Option<f64>,
    /// Free space on the sliver's file system, percent.
    pub disk_free_pct: Option<f64>,
    /// Bytes received and sent on the node's interfaces (loopback excluded) since boot: counters; the portal
    /// derives rates from successive heartbeats.
    pub net_rx_bytes: Option<u64>,
    pub net_tx_bytes: Option<u64>,
}

/// One heartbeat.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The slice and node the agent believes it runs in: the portal checks them against the credential.
    pub slice: String,
    pub node: String,
    /// Counts up from 1 with every heartbeat of this agent process (a restart starts again at 1).
    pub sequence: u64,
    pub agent_version: String,
    /// The manifest version last applied in full (`None`: none yet).
    pub manifest_version: Option<String>,
    /// Why the last manifest could not be applied, if it could not.
    pub manifest_error: Option<String>,
    pub startup: StartupState,
    pub metrics: Metrics,
}

/// The portal's answer to a heartbeat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatReply {
    /// The manifest's current version: when it differs from the heartbeat's, fetch it.
    pub manifest_version: String,
    /// When to beat next, in seconds.
    pub heartbeat_s: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_round_trips_and_never_shows_its_secret() {
        let credential = Credential::generate(42);
        let text = credential.expose();
        assert!(text.starts_with("pslv_42_"));
        assert_eq!(Credential::parse(&text), Some(credential.clone()));
        assert!(!format!("{credential:?}").contains(&credential.secret));
        assert_eq!(credential.secret_hash().len(), 64);
    }

    #[test]
    fn malformed_credentials_are_refused() {
        let secret = "a".repeat(64);
        for bad in [
            String::new(),
            format!("pslv_0_{secret}"),
            format!("pslv_-1_{secret}"),
            format!("pslv_x_{secret}"),
            format!("pslv_1_{}", "a".repeat(63)),
            format!("pslv_1_{}", "g".repeat(64)),
            format!("ptok_1_{secret}"),
        ] {
            assert_eq!(Credential::parse(&bad), None, "{bad}");
        }
    }
}
