//! Heartbeats, written in batches. Thousands of slivers heartbeat every few seconds; a transaction per
//! heartbeat would be the portal's whole write budget on SQLite. So a heartbeat is merged into the latest
//! pending one of its sliver (memory is bounded by the number of slivers, never by how long the database
//! takes) and a writer flushes them all every [`FLUSH_EVERY`], in one transaction of a few statements:
//!
//! - the slivers: last heartbeat, count, manifest version and error, startup state;
//! - the nodes of service slivers: their latest load, free memory and disk (what admission and the mapper
//!   read);
//! - `node_metrics`: the minute bucket of each node, averaged over the heartbeats of that minute (one row
//!   per node and minute; [`crate::liveness::monitor`] downsamples older rows).
//!
//! A crash loses at most the pending heartbeats of the last flush interval: the next ones carry the same
//! news. Network counters become rates here (bytes per second between two heartbeats of one process).

use super::agent_api::SliverAuth;
use crate::db::entity::SliverKind;
use crate::liveness::monitor::{self, Bucket};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use portolan_agent::protocol::{Heartbeat, Metrics};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, Statement, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// How often pending heartbeats are written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// A flush starts early when this many slivers have pending heartbeats.
pub const FLUSH_AT: usize = 5_000;
/// The finest bucket of `node_metrics`.
pub const MINUTE: i32 = 60;
/// Rows per statement, at most.
const CHUNK: usize = 400;

/// One sliver's latest heartbeat, with how many it stands for.
#[derive(Clone, Debug, PartialEq)]
pub struct Beat {
    pub sliver_id: i64,
    pub node_id: i64,
    pub service: bool,
    pub at: DateTime<Utc>,
    pub count: i64,
    pub manifest_version: Option<String>,
    pub manifest_error: Option<String>,
    pub startup: String,
    pub metrics: Metrics,
}

impl Beat {
    pub fn of(auth: &SliverAuth, beat: &Heartbeat, now: DateTime<Utc>) -> Self {
        Self {
            sliver_id: auth.id,
            node_id: auth.node_id,
            service: auth.kind == SliverKind::Service,
            at: now,
            count: 1,
            manifest_version: beat.manifest_version.clone(),
            manifest_error: beat.manifest_error.clone(),
            startup: serde_json::to_string(&beat.startup).unwrap_or_else(|_| "{}".to_owned()),
            metrics: beat.metrics.clone(),
        }
    }
}

/// A node's network counters (received, sent) and when they were read.
type Counters = (u64, u64, DateTime<Utc>);

#[derive(Default)]
struct Inner {
    pending: Mutex<HashMap<i64, Beat>>,
    /// Per node: the last network counters seen and when.
    counters: Mutex<HashMap<i64, Counters>>,
    wake: Notify,
}

/// The batched heartbeat writer's handle (cheap to clone).
#[derive(Clone, Default)]
pub struct Ingest {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest").field("pending", &self.pending()).finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Ingest {
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues `beat`, merged into its sliver's pending one.
    pub fn push(&self, beat: Beat) {
        let len = {
            let mut pending = lock(&self.inner.pending);
            let count = pending.get(&beat.sliver_id).map_or(0, |b| b.count);
            pending.insert(beat.sliver_id, Beat { count: count + beat.count, ..beat });
            pending.len()
        };
        if len >= FLUSH_AT {
            self.inner.wake.notify_one();
        }
    }

    /// Slivers with a pending heartbeat.
    pub fn pending(&self) -> usize {
        lock(&self.inner.pending).len()
    }

    /// Writes every pending heartbeat; answers how many slivers' it wrote. On failure they are lost (the
    /// next heartbeats bring the same news), and the error is returned.
    pub async fn flush(&self, db: &DatabaseConnection) -> Result<usize, DbErr> {
        let beats: Vec<Beat> = std::mem::take(&mut *lock(&self.inner.pending)).into_values().collect();
        if beats.is_empty() {
            return Ok(0);
        }
        let rates = self.rates(&beats);
        let txn = crate::db::begin_writing(db).await?;
        for chunk in statements(&beats) {
            update_slivers(&txn, chunk).await?;
        }
        let service: Vec<&Beat> = beats.iter().filter(|b| b.service).collect();
        for chunk in statements(&service) {
            update_nodes(&txn, chunk).await?;
            upsert_minutes(&txn, chunk, &rates).await?;
        }
        txn.commit().await?;
        Ok(beats.len())
    }

    /// Network rates per node from the counters of this and the previous heartbeat.
    fn rates(&self, beats: &[Beat]) -> HashMap<i64, (Option<f64>, Option<f64>)> {
        let mut counters = lock(&self.inner.counters);
        let mut rates = HashMap::new();
        for beat in beats.iter().filter(|b| b.service) {
            let (Some(rx), Some(tx)) = (beat.metrics.net_rx_bytes, beat.metrics.net_tx_bytes) else {
                continue;
            };
            if let Some((rx0, tx0, at0)) = counters.insert(beat.node_id, (rx, tx, beat.at)) {
                let seconds = (beat.at - at0).as_seconds_f64();
                if seconds > 0.0 && rx >= rx0 && tx >= tx0 {
                    rates.insert(
                        beat.node_id,
                        (Some((rx - rx0) as f64 / seconds), Some((tx - tx0) as f64 / seconds)),
                    );
                }
            }
        }
        rates
    }

    /// Flushes every [`FLUSH_EVERY`] (sooner when [`FLUSH_AT`] slivers are pending) until `stop`, then once
    /// more.
    pub async fn run(&self, db: DatabaseConnection, stop: tokio_util::sync::CancellationToken) {
        loop {
            let stopping = tokio::select! {
                () = tokio::time::sleep(FLUSH_EVERY) => false,
                () = self.inner.wake.notified() => false,
                () = stop.cancelled() => true,
            };
            if let Err(e) = self.flush(&db).await {
                tracing::warn!(error = %e, "writing heartbeats failed; they are dropped");
            }
            if stopping {
                break;
            }
        }
    }
}

/// `items` cut into one statement's rows each: [`CHUNK`] while that many are left, then the rest in powers
/// of two. A statement's text follows from its count of rows, and the driver keeps every text it has run
/// prepared, per connection (sqlx's statement cache, 100 deep): were the last chunk of a flush any size,
/// nearly every flush would prepare new statements of up to a few thousand parameters, and the portal's
/// memory would grow by tens of megabytes a minute (SQLite) until the caches were full. So there are at
/// most ten texts per statement.
fn statements<T>(items: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let n = if rest.len() >= CHUNK { CHUNK } else { 1 << rest.len().ilog2() };
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Some(head)
    })
}

/// Runs `WITH v(columns) AS (VALUES rows) <statement using v>`, one row per item.
async fn with_values<T>(
    txn: &impl ConnectionTrait,
    items: &[T],
    columns: &str,
    row: impl Fn(&T) -> Vec<(Value, &'static str)>,
    statement: &str,
) -> Result<(), DbErr> {
    let backend = txn.get_database_backend();
    let mut values = Vec::new();
    let tuples: Vec<String> = items
        .iter()
        .map(|item| {
            let cells: Vec<String> = row(item)
                .into_iter()
                .map(|(v, t)| monitor::placeholder(backend, &mut values, v, t))
                .collect();
            format!("({})", cells.join(", "))
        })
        .collect();
    let sql = format!("WITH v({columns}) AS (VALUES {}) {statement}", tuples.join(", "));
    txn.execute_raw(Statement::from_sql_and_values(backend, sql, values)).await?;
    Ok(())
}

async fn update_slivers(txn: &impl ConnectionTrait, beats: &[Beat]) -> Result<(), DbErr> {
    with_values(
        txn,
        beats,
        "id, at, n, mv, me, st",
        |b| {
            vec![
                (b.sliver_id.into(), "BIGINT"),
                (b.at.into(), "TIMESTAMPTZ"),
                (b.count.into(), "BIGINT"),
                (b.manifest_version.clone().into(), "TEXT"),
                (b.manifest_error.clone().into(), "TEXT"),
                (b.startup.clone().into(), "TEXT"),
            ]
        },
        "UPDATE slivers SET last_heartbeat_at = v.at, heartbeats = slivers.heartbeats + v.n, \
         manifest_version = v.mv, manifest_error = v.me, startup = v.st, updated_at = v.at \
         FROM v WHERE slivers.id = v.id",
    )
    .await
}

async fn update_nodes(txn: &impl ConnectionTrait, beats: &[&Beat]) -> Result<(), DbErr> {
    with_values(
        txn,
        beats,
        "id, at, load, mem, disk",
        |b| {
            vec![
                (b.node_id.into(), "BIGINT"),
                (b.at.into(), "TIMESTAMPTZ"),
                (b.metrics.load1.into(), "DOUBLE PRECISION"),
                (b.metrics.memory_free_mb.into(), "DOUBLE PRECISION"),
                (b.metrics.disk_free_pct.into(), "DOUBLE PRECISION"),
            ]
        },
        "UPDATE nodes SET load = v.load, memory_free_mb = v.mem, disk_free_pct = v.disk, metrics_at = v.at \
         FROM v WHERE nodes.id = v.id",
    )
    .await
}

/// The start of the minute `at` falls in.
pub fn minute_of(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::minutes(1)).unwrap_or(at)
}

/// Merges each beat into its node's minute bucket (a running mean over that minute's heartbeats).
async fn upsert_minutes(
    txn: &impl ConnectionTrait,
    beats: &[&Beat],
    rates: &HashMap<i64, (Option<f64>, Option<f64>)>,
) -> Result<(), DbErr> {
    let buckets: Vec<Bucket> = beats
        .iter()
        .map(|b| {
            let (net_rx_bps, net_tx_bps) = rates.get(&b.node_id).copied().unwrap_or((None, None));
            let m = &b.metrics;
            Bucket {
                node_id: b.node_id,
                width_s: MINUTE,
                at: minute_of(b.at),
                samples: 1,
                load: m.load1,
                memory_total_mb: m.memory_total_mb,
                memory_free_mb: m.memory_free_mb,
                disk_free_pct: m.disk_free_pct,
                net_rx_bps,
                net_tx_bps,
            }
        })
        .collect();
    monitor::merge(txn, &buckets).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_take_few_sizes_and_every_item_once() {
        let sizes = |n: usize| -> Vec<usize> {
            let items: Vec<usize> = (0..n).collect();
            let chunks: Vec<&[usize]> = statements(&items).collect();
            assert_eq!(chunks.concat(), items, "{n} items, each once and in order");
            chunks.iter().map(|c| c.len()).collect()
        };
        assert_eq!(sizes(0), Vec::<usize>::new());
        assert_eq!(sizes(1), [1]);
        assert_eq!(sizes(400), [400]);
        assert_eq!(sizes(1000), [400, 400, 128, 64, 8]);
        let mut seen = std::collections::BTreeSet::new();
        for n in 0..2000 {
            seen.extend(sizes(n));
        }
        assert_eq!(seen.len(), 10, "{seen:?}");
    }
}
