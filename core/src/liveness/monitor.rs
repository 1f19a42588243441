//! Per-node metrics over time, from the service slivers' heartbeats, in bounded storage.
//!
//! `node_metrics` keeps each node's metrics in buckets at three resolutions ([`RESOLUTIONS`]): a minute for a
//! day, a quarter of an hour for a week, an hour for 90 days. Heartbeats fill the minute buckets
//! ([`crate::slivers::ingest`]); [`downsample`] folds buckets older than their resolution's span into the
//! next coarser one (means weighted by their sample counts) and deletes them, and deletes hours older than
//! 90 days. So a node holds at most 1,440 + 672 + 2,160 = 4,272 rows, about 0.5 MB on PostgreSQL; 10,000
//! nodes about 5 GB at the most, and far less for nodes that come and go.

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{
    ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, FromQueryResult, Statement, Value,
};
use std::collections::BTreeMap;

/// (bucket width in seconds, how long buckets of that width are kept).
pub const RESOLUTIONS: [(i32, TimeDelta); 3] =
    [(60, TimeDelta::days(1)), (900, TimeDelta::days(7)), (3600, TimeDelta::days(90))];

/// Finer rows folded per statement batch.
const FOLD_BATCH: u64 = 20_000;
const CHUNK: usize = 400;

/// One bucket of one node's metrics.
#[derive(Clone, Debug, PartialEq, FromQueryResult)]
pub struct Bucket {
    pub node_id: i64,
    pub width_s: i32,
    pub at: DateTime<Utc>,
    pub samples: i32,
    pub load: Option<f64>,
    pub memory_total_mb: Option<f64>,
    pub memory_free_mb: Option<f64>,
    pub disk_free_pct: Option<f64>,
    pub net_rx_bps: Option<f64>,
    pub net_tx_bps: Option<f64>,
}

const VALUES: [&str; 6] =
    ["load", "memory_total_mb", "memory_free_mb", "disk_free_pct", "net_rx_bps", "net_tx_bps"];

impl Bucket {
    fn values(&self) -> [Option<f64>; 6] {
        [
            self.load,
            self.memory_total_mb,
            self.memory_free_mb,
            self.disk_free_pct,
            self.net_rx_bps,
            self.net_tx_bps,
        ]
    }
}

/// `$n` on PostgreSQL (with a cast: VALUES lists carry no types), `?` on SQLite; pushes `value`.
pub(crate) fn placeholder(
    backend: DatabaseBackend,
    values: &mut Vec<Value>,
    value: Value,
    pg_type: &str,
) -> String {
    values.push(value);
    match backend {
        DatabaseBackend::Postgres => format!("CAST(${} AS {pg_type})", values.len()),
        _ => "?".to_owned(),
    }
}

/// Merges `buckets` into the stored ones: a new bucket is inserted, an existing one takes the mean of both
/// weighted by their samples (a null value leaves the other). At most one bucket per key per call.
pub async fn merge(txn: &impl ConnectionTrait, buckets: &[Bucket]) -> Result<(), DbErr> {
    let backend = txn.get_database_backend();
    for chunk in buckets.chunks(CHUNK) {
        let mut values = Vec::new();
        let tuples: Vec<String> = chunk
            .iter()
            .map(|b| {
                let mut cells = vec![
                    placeholder(backend, &mut values, b.node_id.into(), "BIGINT"),
                    placeholder(backend, &mut values, b.width_s.into(), "INTEGER"),
                    placeholder(backend, &mut values, b.at.into(), "TIMESTAMPTZ"),
                    placeholder(backend, &mut values, b.samples.into(), "INTEGER"),
                ];
                for v in b.values() {
                    cells.push(placeholder(backend, &mut values, v.into(), "DOUBLE PRECISION"));
                }
                format!("({})", cells.join(", "))
            })
            .collect();
        let sets: Vec<String> = VALUES
            .iter()
            .map(|c| {
                format!(
                    "{c} = CASE WHEN excluded.{c} IS NULL THEN node_metrics.{c} WHEN node_metrics.{c} IS NULL \
                     THEN excluded.{c} ELSE (node_metrics.{c} * node_metrics.samples + excluded.{c} * \
                     excluded.samples) / (node_metrics.samples + excluded.samples) END"
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO node_metrics (node_id, width_s, at, samples, {}) VALUES {} \
             ON CONFLICT (node_id, width_s, at) DO UPDATE SET {}, samples = node_metrics.samples + excluded.samples",
            VALUES.join(", "),
            tuples.join(", "),
            sets.join(", ")
        );
        txn.execute_raw(Statement::from_sql_and_values(backend, sql, values)).await?;
    }
    Ok(())
}

/// The start of the `width_s`-second bucket `at` falls in.
pub fn bucket_of(at: DateTime<Utc>, width_s: i32) -> DateTime<Utc> {
    let width = i64::from(width_s.max(1));
    let start = at.timestamp().div_euclid(width) * width;
    DateTime::from_timestamp(start, 0).unwrap_or(at)
}

/// Per coarser bucket: its samples, and per value its weighted sum and the samples that had one.
type Sums = (i32, [(f64, i32); 6]);

/// Folds `buckets` (of one finer width) into buckets of `width_s`: sample-weighted means.
pub fn fold(buckets: &[Bucket], width_s: i32) -> Vec<Bucket> {
    let mut sums: BTreeMap<(i64, DateTime<Utc>), Sums> = BTreeMap::new();
    for b in buckets {
        let entry = sums.entry((b.node_id, bucket_of(b.at, width_s))).or_insert((0, [(0.0, 0); 6]));
        entry.0 += b.samples;
        for (slot, value) in entry.1.iter_mut().zip(b.values()) {
            if let Some(v) = value {
                slot.0 += v * f64::from(b.samples);
                slot.1 += b.samples;
            }
        }
    }
    sums.into_iter()
        .map(|((node_id, at), (samples, v))| {
            let mean = |(sum, n): (f64, i32)| (n > 0).then(|| sum / f64::from(n));
            Bucket {
                node_id,
                width_s,
                at,
                samples,
                load: mean(v[0]),
                memory_total_mb: mean(v[1]),
                memory_free_mb: mean(v[2]),
                disk_free_pct: mean(v[3]),
                net_rx_bps: mean(v[4]),
                net_tx_bps: mean(v[5]),
            }
        })
        .collect()
}

fn sql_for(backend: DatabaseBackend, sql: &str) -> String {
    match backend {
        DatabaseBackend::Postgres => sql.to_owned(),
        _ => (1..=9).rev().fold(sql.to_owned(), |s, n| s.replace(&format!("${n}"), "?")),
    }
}

/// What [`downsample`] did: rows folded into coarser ones, rows deleted past the longest span.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Downsampled {
    pub folded: u64,
    pub expired: u64,
}

/// Folds buckets older than their resolution's span into the next coarser resolution and deletes those past
/// the last span. Each batch is one transaction (a crash between batches loses nothing).
pub async fn downsample(db: &DatabaseConnection, now: DateTime<Utc>) -> Result<Downsampled, DbErr> {
    let mut done = Downsampled::default();
    for pair in RESOLUTIONS.windows(2) {
        let ((finer, keep), (coarser, _)) = (pair[0], pair[1]);
        // Only whole coarser buckets are folded, so that a coarser bucket is written once.
        let cutoff = bucket_of(now - keep, coarser);
        loop {
            let txn = crate::db::begin_writing(db).await?;
            let backend = txn.get_database_backend();
            let select = sql_for(
                backend,
                "SELECT node_id, width_s, at, samples, load, memory_total_mb, memory_free_mb, disk_free_pct, \
                 net_rx_bps, net_tx_bps FROM node_metrics WHERE width_s = $1 AND at < $2 ORDER BY node_id, at LIMIT $3",
            );
            let values: Vec<Value> = vec![finer.into(), cutoff.into(), (FOLD_BATCH as i64).into()];
            let rows = Bucket::find_by_statement(Statement::from_sql_and_values(backend, select, values))
                .all(&txn)
                .await?;
            if rows.is_empty() {
                txn.commit().await?;
                break;
            }
            merge(&txn, &fold(&rows, coarser)).await?;
            // The rows just folded: per node, up to the last `at` read.
            let mut last: BTreeMap<i64, DateTime<Utc>> = BTreeMap::new();
            for r in &rows {
                last.insert(r.node_id, r.at);
            }
            let delete =
                sql_for(backend, "DELETE FROM node_metrics WHERE node_id = $1 AND width_s = $2 AND at <= $3");
            for (node_id, at) in last {
                let values: Vec<Value> = vec![node_id.into(), finer.into(), at.into()];
                txn.execute_raw(Statement::from_sql_and_values(backend, delete.clone(), values)).await?;
            }
            txn.commit().await?;
            done.folded += rows.len() as u64;
            if (rows.len() as u64) < FOLD_BATCH {
                break;
            }
        }
    }
    let (coarsest, keep) = RESOLUTIONS[RESOLUTIONS.len() - 1];
    let backend = db.get_database_backend();
    let delete = sql_for(backend, "DELETE FROM node_metrics WHERE width_s = $1 AND at < $2");
    let values: Vec<Value> = vec![coarsest.into(), (now - keep).into()];
    done.expired =
        db.execute_raw(Statement::from_sql_and_values(backend, delete, values)).await?.rows_affected();
    Ok(done)
}

/// A node's buckets since `since`, finest available first per time (the finest resolution whose span
/// covers `since`).
pub async fn series(
    db: &impl ConnectionTrait,
    node_id: i64,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Vec<Bucket>, DbErr> {
    let width = RESOLUTIONS
        .iter()
        .find(|(_, keep)| now - *keep <= since)
        .map_or(RESOLUTIONS[RESOLUTIONS.len() - 1].0, |(w, _)| *w);
    let backend = db.get_database_backend();
    let select = sql_for(
        backend,
        "SELECT node_id, width_s, at, samples, load, memory_total_mb, memory_free_mb, disk_free_pct, net_rx_bps, \
         net_tx_bps FROM node_metrics WHERE node_id = $1 AND width_s >= $2 AND at >= $3 ORDER BY at, width_s",
    );
    let values: Vec<Value> = vec![node_id.into(), width.into(), since.into()];
    let mut rows =
        Bucket::find_by_statement(Statement::from_sql_and_values(backend, select, values)).all(db).await?;
    // Where two resolutions overlap in time (a fold in progress), keep the finer.
    rows.dedup_by(|b, a| b.at < a.at + TimeDelta::seconds(i64::from(a.width_s)) && b.width_s > a.width_s);
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn bucket(s: i64, samples: i32, load: Option<f64>) -> Bucket {
        Bucket {
            node_id: 1,
            width_s: 60,
            at: at(s),
            samples,
            load,
            memory_total_mb: None,
            memory_free_mb: Some(100.0),
            disk_free_pct: None,
            net_rx_bps: None,
            net_tx_bps: None,
        }
    }

    #[test]
    fn folding_weights_by_samples_and_ignores_unknown_values() {
        let start = bucket_of(at(0), 900);
        let offset = (start - at(0)).num_seconds();
        let rows =
            [bucket(offset, 1, Some(1.0)), bucket(offset + 60, 3, Some(3.0)), bucket(offset + 120, 2, None)];
        let folded = fold(&rows, 900);
        assert_eq!(folded.len(), 1);
        assert_eq!(folded[0].at, start);
        assert_eq!(folded[0].samples, 6);
        assert_eq!(folded[0].load, Some(2.5), "(1·1 + 3·3) / 4; the unknown one does not count");
        assert_eq!(folded[0].memory_free_mb, Some(100.0));
        assert_eq!(folded[0].disk_free_pct, None);
    }

    #[test]
    fn buckets_start_on_their_width() {
        let t = DateTime::from_timestamp(3600 * 10 + 905, 0).unwrap();
        assert_eq!(bucket_of(t, 900), DateTime::from_timestamp(3600 * 10 + 900, 0).unwrap());
        assert_eq!(bucket_of(t, 3600), DateTime::from_timestamp(3600 * 10, 0).unwrap());
        assert_eq!(bucket_of(t, 60), DateTime::from_timestamp(3600 * 10 + 900, 0).unwrap());
    }
}
