//! The sensor feed: all-pairs latency, bandwidth and loss with the time of measurement, as JSON and CSV,
//! like the third-party sensors of the time. Unmeasured pairs are absent; stale ones carry an old time.

use super::Testbed;
use axum::{
    extract::{Query, State},
    http::header,
    response::IntoResponse,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PathRow {
    pub src: String,
    pub dst: String,
    pub src_node_id: i32,
    pub dst_node_id: i32,
    pub latency_ms: f64,
    pub bandwidth_kbps: f64,
    pub loss: f64,
    /// Unix seconds.
    pub measured_at: f64,
}

#[derive(Debug, Deserialize)]
pub struct Only {
    /// Only paths from this hostname.
    hostname: Option<String>,
}

/// Every measured pair among the nodes present now (each unordered pair once, src before dst in node order).
/// The state lock is held only to copy the present nodes' identities, not while paths are computed.
pub fn rows(tb: &Testbed, only: Option<&str>) -> Vec<PathRow> {
    let now = tb.now();
    let present: Vec<(usize, i32, String)> = {
        let state = tb.state();
        (0..state.nodes.len())
            .filter(|&i| state.nodes[i].present)
            .map(|i| (i, state.nodes[i].node_id, state.nodes[i].hostname.clone()))
            .collect()
    };
    let mut out = Vec::new();
    for (k, (a, a_id, a_host)) in present.iter().enumerate() {
        let from_a = only.is_none_or(|h| a_host == h);
        for (b, b_id, b_host) in &present[k + 1..] {
            if !(from_a || only.is_some_and(|h| b_host == h)) {
                continue;
            }
            if let Some(p) = tb.world.path(*a, *b, now) {
                out.push(PathRow {
                    src: a_host.clone(),
                    dst: b_host.clone(),
                    src_node_id: *a_id,
                    dst_node_id: *b_id,
                    latency_ms: p.latency_ms,
                    bandwidth_kbps: p.bandwidth_kbps,
                    loss: p.loss,
                    measured_at: p.measured_at,
                });
            }
        }
    }
    out
}

pub async fn json(State(tb): State<Arc<Testbed>>, Query(only): Query<Only>) -> impl IntoResponse {
    axum::Json(rows(&tb, only.hostname.as_deref()))
}

pub async fn csv(State(tb): State<Arc<Testbed>>, Query(only): Query<Only>) -> impl IntoResponse {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in rows(&tb, only.hostname.as_deref()) {
        let _ = writer.serialize(row);
    }
    let body = writer.into_inner().unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/csv")], body)
}
