//! Nodes: the testbed as discovery last read it (sites, nodes with their identity history and nearest paths),
//! visible to every signed-in user; and the operators' side (admission thresholds with their "what if" counts,
//! pending identity decisions, discovery's last runs), which only operators may see or change.
//!
//! Liveness and monitoring too (thin over `portolan_core::liveness`, like the REST API's `/api/v1/nodes/{id}/
//! liveness` and friends): a node's pool history, service sliver and lifetime, its metrics over the last day,
//! the pools' counts over the week and the provisioning statistics, readable by every signed-in user; the
//! re-test queue's "re-test now" is the operators'.

use crate::error::AppError;
use chrono::{DateTime, Utc};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

pub use model::nodes::*;
pub use model::slivers::{
    AttemptStats, Lifetime, MetricPoint, NodeLiveness, PoolCountsPoint, PoolEventView, ProvisioningStats,
    RetestItem, SliverView, StepStats,
};

/// How many of discovery's runs the operators' page shows.
pub const RUNS_SHOWN: u64 = 10;

/// Without arguments: the first page of every node.
#[server(prefix = "/sf", endpoint = "list_nodes")]
pub async fn list_nodes(#[server(default)] query: NodeQuery) -> Result<NodePage, AppError> {
    crate::for_caller!(|state, _caller| portolan_core::nodes::list(&state.db, &query))
}

#[server(prefix = "/sf", endpoint = "get_node")]
pub async fn get_node(id: i64) -> Result<NodeDetail, AppError> {
    crate::for_caller!(|state, _caller| portolan_core::nodes::get(&state.db, id))
}

#[server(prefix = "/sf", endpoint = "list_sites")]
pub async fn list_sites() -> Result<Vec<SiteView>, AppError> {
    crate::for_caller!(|state, _caller| portolan_core::nodes::sites(&state.db))
}

#[server(prefix = "/sf", endpoint = "get_admission")]
pub async fn get_admission() -> Result<AdmissionView, AppError> {
    crate::for_caller!(|state, caller| async {
        portolan_core::nodes::require_operator(&caller)?;
        portolan_core::nodes::admission::get(&state.db).await
    })
}

#[server(prefix = "/sf", endpoint = "put_admission")]
pub async fn put_admission(thresholds: AdmissionView) -> Result<AdmissionView, AppError> {
    crate::for_caller!(|state, caller| portolan_core::nodes::admission::put(
        &state.db,
        state.clock.now(),
        &caller,
        &thresholds
    ))
}

/// What `thresholds` would admit now, without storing them.
#[server(prefix = "/sf", endpoint = "admission_what_if")]
pub async fn admission_what_if(thresholds: AdmissionView) -> Result<AdmissionCounts, AppError> {
    crate::for_caller!(|state, caller| async {
        portolan_core::nodes::require_operator(&caller)?;
        portolan_core::nodes::admission::what_if(&state.db, state.clock.now(), &thresholds).await
    })
}

#[server(prefix = "/sf", endpoint = "identity_decisions")]
pub async fn identity_decisions() -> Result<Vec<DecisionView>, AppError> {
    crate::for_caller!(|state, caller| async {
        portolan_core::nodes::require_operator(&caller)?;
        portolan_core::nodes::decisions(&state.db).await
    })
}

/// `decision` is `accept` (the held record is known node `node_id`) or `new`.
#[server(prefix = "/sf", endpoint = "decide_identity")]
pub async fn decide_identity(id: i64, decision: String, node_id: Option<i64>) -> Result<(), AppError> {
    crate::for_caller!(|state, caller| async {
        let decision = match (decision.as_str(), node_id) {
            ("accept", Some(node_id)) => Decision::Accept { node_id },
            ("accept", None) => return Err(AppError::invalid("node_id", "accepting a match needs node_id")),
            ("new", _) => Decision::New,
            _ => return Err(AppError::invalid("decision", "decision is `accept` or `new`")),
        };
        portolan_core::nodes::decide(&state.db, state.clock.now(), &caller, id, &decision).await
    })
}

#[server(prefix = "/sf", endpoint = "discovery_runs")]
pub async fn discovery_runs() -> Result<Vec<DiscoveryRunView>, AppError> {
    crate::for_caller!(|state, caller| async {
        portolan_core::nodes::require_operator(&caller)?;
        portolan_core::nodes::runs(&state.db, RUNS_SHOWN).await
    })
}

/// How far back the node page's chart goes.
pub const METRICS_SPAN: chrono::TimeDelta = chrono::TimeDelta::days(1);
/// How far back the pools' counts go, and at how many times.
pub const POOL_HISTORY_SPAN: chrono::TimeDelta = chrono::TimeDelta::weeks(1);
pub const POOL_HISTORY_POINTS: u32 = 48;
/// How far back the provisioning statistics go.
pub const PROVISIONING_SPAN: chrono::TimeDelta = chrono::TimeDelta::weeks(1);
/// How many of the next checks the operators' page lists.
pub const QUEUE_SHOWN: u64 = 100;

/// A node's metrics over `[since, until]`. The window comes from the server's clock so that the page's time
/// axis is the same on the server and, once hydrated, in the browser (whose clock may differ).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeMetrics {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// Oldest first.
    pub points: Vec<MetricPoint>,
}

#[server(prefix = "/sf", endpoint = "get_node_liveness")]
pub async fn get_node_liveness(id: i64) -> Result<NodeLiveness, AppError> {
    crate::for_caller!(|state, _caller| portolan_core::liveness::stats::node_liveness(
        &state.db,
        id,
        state.clock.now()
    ))
}

/// The node's metrics over the last [`METRICS_SPAN`] (minute buckets).
#[server(prefix = "/sf", endpoint = "get_node_metrics")]
pub async fn get_node_metrics(id: i64) -> Result<NodeMetrics, AppError> {
    crate::for_caller!(|state, _caller| async {
        // An unknown node is "not found", not an empty chart.
        portolan_core::nodes::get(&state.db, id).await?;
        let until = state.clock.now();
        let since = until - METRICS_SPAN;
        let buckets = portolan_core::liveness::monitor::series(&state.db, id, since, until).await?;
        Ok(NodeMetrics { since, until, points: buckets.into_iter().map(metric_point).collect() })
    })
}

#[cfg(feature = "ssr")]
fn metric_point(b: portolan_core::liveness::monitor::Bucket) -> MetricPoint {
    MetricPoint {
        at: b.at,
        width_s: b.width_s,
        samples: b.samples,
        load: b.load,
        memory_total_mb: b.memory_total_mb,
        memory_free_mb: b.memory_free_mb,
        disk_free_pct: b.disk_free_pct,
        net_rx_bps: b.net_rx_bps,
        net_tx_bps: b.net_tx_bps,
    }
}

/// How many nodes were in each pool over the last [`POOL_HISTORY_SPAN`], at [`POOL_HISTORY_POINTS`] times.
#[server(prefix = "/sf", endpoint = "pool_counts_history")]
pub async fn pool_counts_history() -> Result<Vec<PoolCountsPoint>, AppError> {
    crate::for_caller!(|state, _caller| {
        let now = state.clock.now();
        portolan_core::liveness::stats::pool_counts_over_time(
            &state.db,
            now - POOL_HISTORY_SPAN,
            now,
            POOL_HISTORY_POINTS,
        )
    })
}

/// The next [`QUEUE_SHOWN`] checks, soonest first.
#[server(prefix = "/sf", endpoint = "retest_queue")]
pub async fn retest_queue() -> Result<Vec<RetestItem>, AppError> {
    crate::for_caller!(|state, _caller| portolan_core::liveness::stats::retest_queue(&state.db, QUEUE_SHOWN))
}

/// Makes node `id` due for its liveness test now (operators; the next liveness pass tests it). A POST, like
/// every server function: it changes state.
#[server(prefix = "/sf", endpoint = "retest_node")]
pub async fn retest_node(id: i64) -> Result<(), AppError> {
    crate::for_caller!(|state, caller| async {
        portolan_core::nodes::require_operator(&caller)?;
        caller.require_write()?;
        portolan_core::nodes::get(&state.db, id).await?;
        if portolan_core::liveness::retest_now(&state.db, id, state.clock.now()).await? {
            Ok(())
        } else {
            Err(AppError::conflict("only new, free and down nodes are tested; this one is gone or held"))
        }
    })
}

/// Bring-up statistics over the last [`PROVISIONING_SPAN`].
#[server(prefix = "/sf", endpoint = "get_provisioning_stats")]
pub async fn get_provisioning_stats() -> Result<ProvisioningStats, AppError> {
    crate::for_caller!(|state, _caller| portolan_core::liveness::stats::provisioning(
        &state.db,
        state.clock.now() - PROVISIONING_SPAN
    ))
}
