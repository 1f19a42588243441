//! Views of the testbed as the portal keeps it: sites, nodes with their identity history and paths, what
//! discovery did, and the operators' admission thresholds (with the "what if" counts shown while editing).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A node in a listing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct NodeView {
    /// Portolan's own node id (the testbed's id, hostname and IP can change; this does not).
    pub id: i64,
    pub hostname: String,
    /// The site's login base.
    pub site: String,
    pub link_class: String,
    /// `new`, `free`, `down`, `gone` or `held`.
    pub pool: String,
    pub ip: Option<String>,
    /// The testbed's current id for the node.
    pub testbed_id: Option<i32>,
    pub boot_state: String,
    pub country: Option<String>,
    pub first_seen: DateTime<Utc>,
    /// When a sync last listed the node (for a listed node, the last successful sync).
    pub last_seen: DateTime<Utc>,
}

/// One entry of a node's identity history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct IdentityEvent {
    pub at: DateTime<Utc>,
    /// `appeared`, `changed`, `gone`, `returned`, `replaced`, `held` or `decided`.
    pub kind: String,
    /// The match score, where a match was made.
    pub score: Option<i32>,
    /// Identifying attributes before and after (JSON objects; empty when not applicable).
    pub old: serde_json::Value,
    pub new: serde_json::Value,
    pub detail: String,
}

/// A measured path from the node, as the node's page lists them (nearest first).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct PathView {
    pub peer_id: i64,
    pub peer_hostname: String,
    pub latency_ms: f64,
    pub bandwidth_kbps: f64,
    pub loss: f64,
    pub measured_at: DateTime<Utc>,
}

/// A node with everything its page shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct NodeDetail {
    pub node: NodeView,
    pub host_key: Option<String>,
    pub tags: std::collections::BTreeMap<String, String>,
    pub load: Option<f64>,
    pub memory_free_mb: Option<f64>,
    pub disk_free_pct: Option<f64>,
    pub metrics_at: Option<DateTime<Utc>>,
    pub reliability: f64,
    pub recent_failures: i32,
    /// Newest first.
    pub identity: Vec<IdentityEvent>,
    /// Experiments using the node (filled in by the experiments issue).
    pub experiments: Vec<String>,
    /// Its nearest measured peers by latency.
    pub paths: Vec<PathView>,
}

/// A page of nodes and the counts per pool of everything the filters match.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct NodePage {
    pub nodes: Vec<NodeView>,
    /// How many nodes the filters match in all.
    pub total: u64,
    /// Nodes per pool among those the other filters match (the pool filter aside).
    pub pools: Vec<PoolCount>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct PoolCount {
    pub pool: String,
    pub count: u64,
}

/// Filters and paging of the node listing; every field optional.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema, utoipa::IntoParams))]
#[serde(default)]
pub struct NodeQuery {
    /// A site's login base.
    pub site: Option<String>,
    /// `internet2`, `commodity`, `international` or `dsl`.
    pub class: Option<String>,
    pub pool: Option<String>,
    /// Part of the hostname or IP.
    pub q: Option<String>,
    /// Skip this many (default 0).
    pub offset: Option<u64>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct SiteView {
    pub login_base: String,
    pub name: String,
    pub present: bool,
    /// Listed nodes at the site (not gone).
    pub nodes: u64,
    /// Of which allocatable (pool `free`, or `new` while untested nodes are lent).
    pub allocatable: u64,
}

/// The operators' admission thresholds. A threshold that is `null` is off; a set one is never met by a node
/// whose metric is unknown.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AdmissionView {
    /// Highest load average.
    pub max_load: Option<f64>,
    /// Least free disk, in percent.
    pub min_disk_free_pct: Option<f64>,
    /// Least free memory, in MB.
    pub min_memory_free_mb: Option<f64>,
    /// Oldest acceptable node metrics, in seconds.
    pub max_metric_age_s: Option<f64>,
    /// Oldest acceptable path measurement, in seconds.
    pub max_path_age_s: Option<f64>,
    /// Nodes with this many recent failures are excluded (0: off).
    pub exclude_after_failures: u32,
    /// Lend nodes no end-to-end test has passed yet (pool `new`).
    pub allow_untested: bool,
}

/// How many nodes of each link class pass the thresholds (the "what if" view).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct AdmissionCounts {
    /// Per link class: candidates (listed, not held) and how many pass.
    pub classes: Vec<ClassCount>,
    /// Why candidates fail, most common first: (reason, count).
    pub rejections: Vec<(String, u64)>,
    /// Measured paths between passing nodes that are fresh enough.
    pub fresh_paths: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ClassCount {
    pub class: String,
    pub candidates: u64,
    pub passing: u64,
}

/// One pass of discovery, for the operators' page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct DiscoveryRunView {
    /// `nodes` or `paths`.
    pub kind: String,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub ok: bool,
    /// What changed (counts by name).
    pub counts: serde_json::Value,
    pub error: Option<String>,
}

/// An identity match waiting for an operator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct DecisionView {
    pub id: i64,
    /// The held node the testbed's record became.
    pub node: NodeView,
    /// The known nodes it may be, best first.
    pub candidates: Vec<CandidateView>,
    pub reason: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct CandidateView {
    pub node: NodeView,
    pub score: u32,
    /// The attributes it shares with the record.
    pub shared: Vec<String>,
}

/// An operator's answer to an identity decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case", tag = "decision")]
pub enum Decision {
    /// The record is this known node: it takes the record's attributes, the held duplicate goes.
    Accept { node_id: i64 },
    /// The record is a new node: the candidates are released (gone, unless listed otherwise).
    New,
}
