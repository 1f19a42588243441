//! The portal's side of the testbed: one trait, [`Testbed`], for everything the portal asks of a testbed, and
//! its one implementation, [`plc::Plc`], PLCAPI over XML-RPC (plus the per-node managers and the sensor feed
//! where the testbed has them). Every failure is a [`TestbedError`] classified in [`error`]; retryable ones are
//! retried inside the client under a per-call deadline.
//!
//! Calls that may have taken effect although their answer came late (PLCAPI's timeouts do exactly that) are
//! safe to repeat: creating a slice that exists already and is ours succeeds, binding a bound node succeeds,
//! deleting what is gone succeeds. So a retried or re-run reconciler step never fails on its own earlier
//! success.
//!
//! The reference testbed (a separate service that happens to ship in the same binary) is the
//! `reference-testbed` crate; nothing here depends on it.

pub mod error;
pub mod plc;
mod value;

pub use error::{Cause, Class, TestbedError, TestbedResult};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::fmt;

/// A PLCAPI endpoint and the portal's credentials there.
#[derive(Clone)]
pub struct Endpoint {
    /// The PLCAPI URL, e.g. `http://127.0.0.1:3101/PLCAPI/`.
    pub url: String,
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the password (Debug output reaches logs).
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Which API generation the testbed speaks. PlanetLab went through three in two years; the two that matter
/// to the portal differ in how slivers come up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Generation {
    /// Only the central API: bound slivers come up asynchronously, some time later.
    AsyncOnly,
    /// The central API and, on each node, a manager with synchronous `Create`/`Destroy`/….
    NodeManager,
}

impl Generation {
    pub fn as_str(self) -> &'static str {
        match self {
            Generation::AsyncOnly => "async-only",
            Generation::NodeManager => "node-manager",
        }
    }
}

/// A site as the testbed lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct SiteRecord {
    pub site_id: i32,
    pub login_base: String,
    pub name: String,
    pub enabled: bool,
    pub max_slices: Option<i32>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
}

/// A node as the testbed lists it, joined with its primary interface and its tags.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeRecord {
    pub node_id: i32,
    pub hostname: String,
    pub site_id: i32,
    /// `boot` when the node is up and answering.
    pub boot_state: String,
    /// The primary interface's IPv4 address, if listed.
    pub ip: Option<String>,
    /// The SSH host key the testbed publishes for the node (`ssh-rsa AAAA…` or another OpenSSH public key).
    pub host_key: Option<String>,
    /// When the node last contacted the testbed (Unix seconds).
    pub last_contact: Option<i64>,
    /// Tags: `link_class`, `country`, `cpu_cores`, `memory_mb`, `disk_gb`, `bw_limit_kbps`, …
    pub tags: BTreeMap<String, String>,
}

impl NodeRecord {
    pub fn booted(&self) -> bool {
        self.boot_state == "boot"
    }
}

/// One measured pair of the sensor feed.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
pub struct PathRecord {
    /// Hostnames of the two ends, as the sensor names them.
    pub src: String,
    pub dst: String,
    pub latency_ms: f64,
    pub bandwidth_kbps: f64,
    pub loss: f64,
    /// Unix seconds.
    pub measured_at: f64,
}

/// What the portal asks for when it creates a slice.
#[derive(Clone, Debug, PartialEq)]
pub struct SliceSpec {
    /// Deterministic: `<login_base>_<name>`, derived from what the slice is for, so a rerun finds it.
    pub name: String,
    pub description: String,
    pub url: String,
    /// `plc-instantiated` (the central, asynchronous path) or `nm-controlled` (node managers).
    pub instantiation: String,
    pub max_nodes: i32,
}

/// A slice as the testbed holds it: the truth about its lease and nodes.
#[derive(Clone, Debug, PartialEq)]
pub struct SliceRecord {
    pub slice_id: i32,
    pub name: String,
    pub expires: DateTime<Utc>,
    pub node_ids: Vec<i32>,
    pub person_ids: Vec<i32>,
    pub creator_person_id: Option<i32>,
}

/// A sliver up on a node, as the testbed reports it (`GetSlivers`).
#[derive(Clone, Debug, PartialEq)]
pub struct SliverRecord {
    pub slice: String,
    pub expires: DateTime<Utc>,
    /// The public keys of the slice's users, as the node installs them.
    pub keys: Vec<String>,
}

/// The per-node manager's operations (the node-manager generation only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeOp {
    Create,
    Destroy,
    Start,
    Stop,
    ReCreate,
}

impl NodeOp {
    pub fn method(self) -> &'static str {
        match self {
            NodeOp::Create => "Create",
            NodeOp::Destroy => "Destroy",
            NodeOp::Start => "Start",
            NodeOp::Stop => "Stop",
            NodeOp::ReCreate => "ReCreate",
        }
    }
}

/// Everything the portal asks of a testbed. One implementation ([`plc::Plc`]) serves PLCAPI deployments,
/// the reference testbed among them; the trait keeps the rest of the portal independent of the API's
/// generation and wire format.
#[async_trait]
pub trait Testbed: Send + Sync + fmt::Debug {
    /// Where the testbed is (for operators and logs; never holds a credential).
    fn location(&self) -> &str;

    /// Checks the credentials (`AuthCheck`).
    async fn check_auth(&self) -> TestbedResult<()>;

    /// Which generation the testbed speaks now, found by asking the node manager of `probe` (a node that
    /// should be up). The client remembers the last answer: [`Testbed::last_generation`].
    async fn generation(&self, probe: &str) -> TestbedResult<Generation>;

    /// The generation seen by the last [`Testbed::generation`], if any.
    fn last_generation(&self) -> Option<Generation>;

    async fn sites(&self) -> TestbedResult<Vec<SiteRecord>>;

    /// Every node, with its primary interface's address and its tags.
    async fn nodes(&self) -> TestbedResult<Vec<NodeRecord>>;

    /// The sensor's whole feed.
    async fn paths(&self) -> TestbedResult<Vec<PathRecord>>;

    /// Creates the slice, or finds it if it exists already and the portal may manage it (so a retried or
    /// repeated create succeeds). Answers the slice as the testbed holds it.
    async fn create_slice(&self, spec: &SliceSpec) -> TestbedResult<SliceRecord>;

    /// The slice called `name`, if it exists.
    async fn slice(&self, name: &str) -> TestbedResult<Option<SliceRecord>>;

    /// Asks for the slice's lease to run until `expires` and reads back what the testbed granted.
    async fn renew_slice(&self, name: &str, expires: DateTime<Utc>) -> TestbedResult<SliceRecord>;

    /// Deletes the slice; a slice that is gone already is success.
    async fn delete_slice(&self, name: &str) -> TestbedResult<()>;

    /// Adds the account `email` to the slice (creating the account, without a password, if the testbed has
    /// none by that address) with `keys` as its SSH keys. Repeating it changes nothing.
    async fn add_person_to_slice(&self, email: &str, keys: &[String], slice: &str) -> TestbedResult<()>;

    /// Binds the slice to the nodes (idempotent).
    async fn bind(&self, slice: &str, hostnames: &[String]) -> TestbedResult<()>;

    /// Unbinds the slice from the nodes (idempotent).
    async fn unbind(&self, slice: &str, hostnames: &[String]) -> TestbedResult<()>;

    /// The slivers up on a node.
    async fn slivers(&self, hostname: &str) -> TestbedResult<Vec<SliverRecord>>;

    /// One node manager operation on the slice's sliver at `hostname`. Node-level failures are continuable.
    async fn node_manager(&self, hostname: &str, op: NodeOp, slice: &str) -> TestbedResult<()>;
}
