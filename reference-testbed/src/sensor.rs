//! The sensor feed: all-pairs latency, bandwidth and loss with the time of measurement, as JSON and CSV,
//! like the third-party sensors of the time. Unmeasured pairs are absent; stale ones carry an old time.
//!
//! The sensor measures in rounds of [`PERIOD_S`] testbed seconds: the feed shows the paths as of the start of
//! the current round, among the nodes present now. The whole feed (about 120,000 pairs on the real world, a
//! second of CPU to build) therefore only changes when a round begins or nodes join, leave or change identity,
//! so it is built once per round and node set, on the blocking pool (never on the async workers, which in the
//! embedded mode are the portal's), and concurrent callers share that one computation and its encoded bodies.
//! `?hostname=` asks for one node's paths: cheap, built per call (also on the blocking pool).

use super::{Testbed, state::NodeState};
use axum::{
    body::Bytes,
    extract::{Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex, atomic::AtomicU64, atomic::Ordering};
use tokio::sync::watch;

/// Testbed seconds per measurement round.
pub const PERIOD_S: f64 = 900.0;

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

/// The start of the measurement round that testbed time `t` falls in.
pub fn round_start(t: f64) -> f64 {
    (t / PERIOD_S).floor() * PERIOD_S
}

/// Every measured pair among the nodes present now, as of the current round (each unordered pair once, src
/// before dst in node order). The state lock is held only to take the node table (an `Arc`).
pub fn rows(tb: &Testbed, only: Option<&str>) -> Vec<PathRow> {
    let at = round_start(tb.now());
    let nodes = tb.state().nodes.clone();
    rows_at(tb, &nodes, at, only)
}

fn rows_at(tb: &Testbed, nodes: &[NodeState], at: f64, only: Option<&str>) -> Vec<PathRow> {
    let present: Vec<(usize, &NodeState)> = nodes.iter().enumerate().filter(|(_, n)| n.present).collect();
    let row = |(a, na): (usize, &NodeState), (b, nb): (usize, &NodeState)| {
        tb.world.path(a, b, at).map(|p| PathRow {
            src: na.hostname.clone(),
            dst: nb.hostname.clone(),
            src_node_id: na.node_id,
            dst_node_id: nb.node_id,
            latency_ms: p.latency_ms,
            bandwidth_kbps: p.bandwidth_kbps,
            loss: p.loss,
            measured_at: p.measured_at,
        })
    };
    match only {
        // One node's pairs, in the whole feed's order: those where it is dst, then those where it is src.
        Some(hostname) => {
            let Some(h) = present.iter().position(|(_, n)| n.hostname == hostname) else { return Vec::new() };
            let before = present[..h].iter().filter_map(|&a| row(a, present[h]));
            let after = present[h + 1..].iter().filter_map(|&b| row(present[h], b));
            before.chain(after).collect()
        }
        None => {
            let mut out = Vec::new();
            for (k, &a) in present.iter().enumerate() {
                out.extend(present[k + 1..].iter().filter_map(|&b| row(a, b)));
            }
            out
        }
    }
}

/// One round's whole feed, encoded.
#[derive(Debug)]
pub struct Feed {
    /// Testbed time of the round's start.
    pub at: f64,
    pub rows: usize,
    pub json: Bytes,
    pub csv: Bytes,
}

/// (round number, node-set version): the feed is the same for the same key.
type Key = (i64, u64);

/// Where a feed will appear (`None` until it is built).
type Pending = watch::Receiver<Option<Arc<Feed>>>;

/// The current feed, or the computation under way, shared by every caller with the same key.
#[derive(Debug, Default)]
pub struct Cache {
    current: Mutex<Option<(Key, Pending)>>,
    computations: AtomicU64,
}

impl Cache {
    /// How many whole feeds have been built so far.
    pub fn computations(&self) -> u64 {
        self.computations.load(Ordering::Relaxed)
    }
}

fn encode_json(rows: &[PathRow]) -> Bytes {
    Bytes::from(serde_json::to_vec(rows).expect("path rows serialise"))
}

fn encode_csv(rows: &[PathRow]) -> Bytes {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in rows {
        let _ = writer.serialize(row);
    }
    Bytes::from(writer.into_inner().unwrap_or_default())
}

/// The whole feed of the current round: from the cache, or built once on the blocking pool while every
/// concurrent caller waits for that same build. The build runs to the end even if its callers go away.
pub async fn feed(tb: &Arc<Testbed>) -> Result<Arc<Feed>, String> {
    let at = round_start(tb.now());
    let (nodes, version) = {
        let state = tb.state();
        (state.nodes.clone(), state.nodes_version)
    };
    let key = ((at / PERIOD_S) as i64, version);
    let mut ready = {
        let mut current = tb.sensor.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match &*current {
            // Keys only grow with time: a caller that read the clock a moment earlier takes the newer feed.
            Some((have, ready)) if *have >= key => ready.clone(),
            _ => {
                let (done, ready) = watch::channel(None);
                *current = Some((key, ready.clone()));
                let testbed = tb.clone();
                tokio::spawn(async move {
                    let builder = testbed.clone();
                    let built = testbed
                        .blocking(move || {
                            builder.sensor.computations.fetch_add(1, Ordering::Relaxed);
                            let rows = rows_at(&builder, &nodes, at, None);
                            Feed { at, rows: rows.len(), json: encode_json(&rows), csv: encode_csv(&rows) }
                        })
                        .await;
                    match built {
                        Ok(feed) => {
                            let _ = done.send(Some(Arc::new(feed)));
                        }
                        Err(e) => tracing::error!("reference testbed: building the sensor feed failed: {e}"),
                    }
                });
                ready
            }
        }
    };
    let outcome = ready.wait_for(Option::is_some).await.map(|feed| feed.clone());
    match outcome {
        Ok(Some(feed)) => Ok(feed),
        _ => {
            // The build failed: forget it, so that the next caller tries again.
            let mut current = tb.sensor.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if current.as_ref().is_some_and(|(_, r)| r.same_channel(&ready)) {
                *current = None;
            }
            Err("the sensor feed could not be built".to_owned())
        }
    }
}

/// The feed as `content_type`: one node's paths (cheap: built and encoded per call, on the blocking pool)
/// when `?hostname=` names one, else the round's whole feed (`whole` picks its encoding).
async fn respond(
    tb: Arc<Testbed>,
    only: Only,
    content_type: &'static str,
    encode: fn(&[PathRow]) -> Bytes,
    whole: fn(&Feed) -> &Bytes,
) -> Response {
    let body = match only.hostname {
        Some(hostname) => {
            let testbed = tb.clone();
            tb.blocking(move || encode(&rows(&testbed, Some(&hostname)))).await.map_err(|e| e.to_string())
        }
        None => feed(&tb).await.map(|feed| whole(&feed).clone()),
    };
    match body {
        Ok(body) => ([(header::CONTENT_TYPE, content_type)], body).into_response(),
        Err(why) => (StatusCode::INTERNAL_SERVER_ERROR, why).into_response(),
    }
}

pub async fn json(State(tb): State<Arc<Testbed>>, Query(only): Query<Only>) -> Response {
    respond(tb, only, "application/json", encode_json, |feed| &feed.json).await
}

pub async fn csv(State(tb): State<Arc<Testbed>>, Query(only): Query<Only>) -> Response {
    respond(tb, only, "text/csv", encode_csv, |feed| &feed.csv).await
}
