//! What the pages and the REST API show of slivers, liveness and monitoring: a node's metrics over time, its
//! pool history and lifetime statistics, its service sliver, the operators' re-test queue, and the
//! provisioning statistics.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One bucket of a node's metrics (a mean over `width_s` seconds from `at`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct MetricPoint {
    pub at: DateTime<Utc>,
    pub width_s: i32,
    pub samples: i32,
    pub load: Option<f64>,
    pub memory_total_mb: Option<f64>,
    pub memory_free_mb: Option<f64>,
    pub disk_free_pct: Option<f64>,
    pub net_rx_bps: Option<f64>,
    pub net_tx_bps: Option<f64>,
}

/// `?since=` of a node's metrics: an RFC 3339 time; default a day ago.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::IntoParams))]
pub struct MetricsQuery {
    pub since: Option<DateTime<Utc>>,
}

/// One change of a node's pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct PoolEventView {
    pub at: DateTime<Utc>,
    pub from: String,
    pub to: String,
    pub reason: String,
}

/// A node's record over time, from its pool history and bring-up attempts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Lifetime {
    /// Fraction of the last day / week (since the node was first seen, if later) it spent free.
    pub availability_day: Option<f64>,
    pub availability_week: Option<f64>,
    /// Mean time between failures (free → down) over the week, seconds; `None` without a failure.
    pub mtbf_s: Option<f64>,
    pub failures_week: u32,
    /// Bring-up attempts of its service sliver and how many came up end to end.
    pub attempts: u32,
    pub successes: u32,
}

/// A sliver as operators see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct SliverView {
    pub id: i64,
    pub kind: String,
    pub slice: String,
    pub node_id: i64,
    pub step: String,
    pub health: String,
    pub up_at: Option<DateTime<Utc>>,
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    pub heartbeats: i64,
    pub last_error: Option<String>,
    pub error_step: Option<String>,
    pub error_class: Option<String>,
    pub manifest_version: Option<String>,
    /// The startup command's state as the agent reported it (JSON).
    pub startup: String,
}

/// Everything the node page shows of liveness.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct NodeLiveness {
    pub node_id: i64,
    pub pool: String,
    pub check_failures: i32,
    pub next_check_at: Option<DateTime<Utc>>,
    pub service_sliver: Option<SliverView>,
    pub lifetime: Lifetime,
    /// Newest first.
    pub pool_history: Vec<PoolEventView>,
}

/// One node waiting for its next check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct RetestItem {
    pub node_id: i64,
    pub hostname: String,
    pub pool: String,
    pub due_at: DateTime<Utc>,
    pub check_failures: i32,
}

/// Bring-up durations (of attempts that came up) and failures, for one group of attempts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct AttemptStats {
    /// What the group is: `all`, a step, a generation, a site's login base, or a day (`2026-12-02`).
    pub group: String,
    pub attempts: u32,
    pub failures: u32,
    pub failure_rate: Option<f64>,
    pub p50_s: Option<f64>,
    pub p95_s: Option<f64>,
    pub p99_s: Option<f64>,
}

/// Per step: of the attempts that reached it, how many failed there.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct StepStats {
    pub step: String,
    pub reached: u32,
    pub failed: u32,
    pub failure_rate: Option<f64>,
}

/// The provisioning statistics (published: no comparable portal does).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ProvisioningStats {
    pub since: DateTime<Utc>,
    pub overall: AttemptStats,
    pub steps: Vec<StepStats>,
    pub by_generation: Vec<AttemptStats>,
    /// The sites with the most attempts first (at most 50).
    pub by_site: Vec<AttemptStats>,
    pub by_day: Vec<AttemptStats>,
}

/// `?since=` of the provisioning statistics; default a week ago.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::IntoParams))]
pub struct StatsQuery {
    pub since: Option<DateTime<Utc>>,
}

/// How many nodes were in each pool at one time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct PoolCountsPoint {
    pub at: DateTime<Utc>,
    pub new: u32,
    pub free: u32,
    pub down: u32,
    pub gone: u32,
    pub held: u32,
}
