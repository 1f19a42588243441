//! The sensor's path measurements: the latest value per unordered pair of nodes, keyed by Portolan's node ids.
//!
//! The feed names nodes by hostname; each reading is mapped to node ids through the nodes as discovery last
//! stored them, so a path follows its node through identity changes (a renamed node's paths stay its own).
//! A pair is written only when its measurement is new (another `measured_at`), so reading the same round of
//! the feed twice writes nothing. Pairs the sensor stops reporting keep their last measurement and its time:
//! they age, and past the admission's `max_path_age_s` they are unmeasured to the mapper, which never
//! assumes an unmeasured path is good.

use crate::db::entity::{NodePool, node};
use crate::error::AppResult;
use crate::testbed::PathRecord;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, OnConflict, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, Statement, TransactionSession,
    TransactionTrait,
};
use std::collections::HashMap;

/// Rows per insert statement on SQLite (7 values each: under its 32,766 parameters).
const CHUNK: usize = 4000;
/// Rows per statement on PostgreSQL (seven array parameters, whatever the rows).
const PG_CHUNK: usize = 50_000;

/// A PostgreSQL array literal of `items` (numbers, or quoted times).
fn array<T>(items: &[T], show: impl Fn(&T) -> String) -> sea_orm::Value {
    let mut text = String::with_capacity(items.len() * 12 + 2);
    text.push('{');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&show(item));
    }
    text.push('}');
    text.into()
}

type Row<'a> = ((i64, i64), (&'a PathRecord, DateTime<Utc>));

fn unnest_insert(chunk: &[Row<'_>], now: DateTime<Utc>) -> Statement {
    let values = vec![
        array(chunk, |((a, _), _)| a.to_string()),
        array(chunk, |((_, b), _)| b.to_string()),
        array(chunk, |(_, (p, _))| p.latency_ms.to_string()),
        array(chunk, |(_, (p, _))| p.bandwidth_kbps.to_string()),
        array(chunk, |(_, (p, _))| p.loss.to_string()),
        array(chunk, |(_, (_, t))| format!("\"{}\"", t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))),
        now.into(),
    ];
    Statement::from_sql_and_values(
        sea_orm::DatabaseBackend::Postgres,
        "INSERT INTO paths (node_a, node_b, latency_ms, bandwidth_kbps, loss, measured_at, seen_at) \
         SELECT a, b, l, bw, ls, m, $7 FROM UNNEST(CAST($1 AS BIGINT[]), CAST($2 AS BIGINT[]), \
         CAST($3 AS DOUBLE PRECISION[]), CAST($4 AS DOUBLE PRECISION[]), CAST($5 AS DOUBLE PRECISION[]), \
         CAST($6 AS TIMESTAMPTZ[])) AS t(a, b, l, bw, ls, m) \
         ON CONFLICT (node_a, node_b) DO UPDATE SET latency_ms = EXCLUDED.latency_ms, \
         bandwidth_kbps = EXCLUDED.bandwidth_kbps, loss = EXCLUDED.loss, measured_at = EXCLUDED.measured_at, \
         seen_at = EXCLUDED.seen_at",
        values,
    )
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PathReport {
    /// Pairs in the feed.
    pub read: u32,
    /// Pairs written (new, or measured again).
    pub written: u32,
    /// Pairs naming a host the portal does not know (yet), or the same node twice.
    pub unknown: u32,
}

/// A stored measurement.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    pub latency_ms: f64,
    pub bandwidth_kbps: f64,
    pub loss: f64,
    pub measured_at: DateTime<Utc>,
}

fn time(secs: f64) -> Option<DateTime<Utc>> {
    if !secs.is_finite() {
        return None;
    }
    DateTime::from_timestamp_micros((secs * 1e6).round() as i64)
}

/// Listed nodes by lower-cased hostname.
async fn ids_by_hostname(db: &impl ConnectionTrait) -> AppResult<HashMap<String, i64>> {
    let rows: Vec<(i64, String)> = node::Entity::find()
        .select_only()
        .column(node::Column::Id)
        .column(node::Column::Hostname)
        .filter(node::Column::Pool.ne(NodePool::Gone))
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|(id, host)| (host.to_ascii_lowercase(), id)).collect())
}

/// Every stored pair's measurement time.
async fn stored_times(db: &impl ConnectionTrait) -> AppResult<HashMap<(i64, i64), DateTime<Utc>>> {
    let backend = db.get_database_backend();
    let rows = db
        .query_all_raw(Statement::from_string(backend, "SELECT node_a, node_b, measured_at FROM paths"))
        .await?;
    let mut out = HashMap::with_capacity(rows.len());
    for row in rows {
        let a: i64 = row.try_get("", "node_a")?;
        let b: i64 = row.try_get("", "node_b")?;
        let t: DateTime<Utc> = row.try_get("", "measured_at")?;
        out.insert((a, b), t);
    }
    Ok(out)
}

/// Stores one reading of the feed at `now`.
pub async fn apply<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    now: DateTime<Utc>,
    feed: &[PathRecord],
) -> AppResult<PathReport> {
    let ids = ids_by_hostname(db).await?;
    let stored = stored_times(db).await?;
    let mut report = PathReport { read: feed.len() as u32, ..PathReport::default() };
    let mut fresh: HashMap<(i64, i64), (&PathRecord, DateTime<Utc>)> = HashMap::new();
    for p in feed {
        let ends = (ids.get(&p.src.to_ascii_lowercase()), ids.get(&p.dst.to_ascii_lowercase()));
        let (Some(&a), Some(&b)) = ends else {
            report.unknown += 1;
            continue;
        };
        let valid = a != b
            && p.latency_ms.is_finite()
            && p.latency_ms >= 0.0
            && p.bandwidth_kbps.is_finite()
            && p.bandwidth_kbps >= 0.0
            && (0.0..=1.0).contains(&p.loss);
        let Some(measured_at) = time(p.measured_at).filter(|_| valid) else {
            report.unknown += 1;
            continue;
        };
        let key = (a.min(b), a.max(b));
        if stored.get(&key) == Some(&measured_at) {
            continue;
        }
        // The same pair twice in one feed: the newer measurement wins.
        match fresh.get(&key) {
            Some((_, t)) if *t >= measured_at => {}
            _ => {
                fresh.insert(key, (p, measured_at));
            }
        }
    }
    let mut rows: Vec<_> = fresh.into_iter().collect();
    rows.sort_by_key(|(k, _)| *k);
    let txn = crate::db::begin_writing(db).await?;
    let backend = txn.get_database_backend();
    if backend == sea_orm::DatabaseBackend::Postgres {
        // PostgreSQL: one statement per large chunk, the columns sent as arrays and unnested (a few
        // parameters instead of seven per row: several times faster than multi-row VALUES).
        for chunk in rows.chunks(PG_CHUNK) {
            txn.execute_raw(unnest_insert(chunk, now)).await?;
            report.written += chunk.len() as u32;
        }
        txn.commit().await?;
        return Ok(report);
    }
    for chunk in rows.chunks(CHUNK) {
        let mut insert = Query::insert();
        insert.into_table(Alias::new("paths")).columns(
            ["node_a", "node_b", "latency_ms", "bandwidth_kbps", "loss", "measured_at", "seen_at"]
                .map(Alias::new),
        );
        for ((a, b), (p, measured_at)) in chunk {
            insert.values_panic([
                (*a).into(),
                (*b).into(),
                p.latency_ms.into(),
                p.bandwidth_kbps.into(),
                p.loss.into(),
                (*measured_at).into(),
                now.into(),
            ]);
        }
        insert.on_conflict(
            OnConflict::columns(["node_a", "node_b"].map(Alias::new))
                .update_columns(
                    ["latency_ms", "bandwidth_kbps", "loss", "measured_at", "seen_at"].map(Alias::new),
                )
                .to_owned(),
        );
        txn.execute_raw(backend.build(&insert)).await?;
        report.written += chunk.len() as u32;
    }
    txn.commit().await?;
    Ok(report)
}

/// Node `id`'s nearest measured peers by latency: (peer id, peer hostname, measurement).
pub async fn nearest(db: &impl ConnectionTrait, id: i64, n: u64) -> AppResult<Vec<(i64, String, Stored)>> {
    let backend = db.get_database_backend();
    let sql = format!(
        "SELECT nodes.id AS peer, nodes.hostname AS hostname, p.latency_ms, p.bandwidth_kbps, p.loss, p.measured_at \
         FROM paths p JOIN nodes ON nodes.id = CASE WHEN p.node_a = {id} THEN p.node_b ELSE p.node_a END \
         WHERE p.node_a = {id} OR p.node_b = {id} ORDER BY p.latency_ms, nodes.id LIMIT {n}"
    );
    let rows = db.query_all_raw(Statement::from_string(backend, sql)).await?;
    rows.into_iter()
        .map(|row| Ok((row.try_get("", "peer")?, row.try_get("", "hostname")?, stored(&row)?)))
        .collect()
}

/// The measurement columns of a row.
fn stored(row: &sea_orm::QueryResult) -> Result<Stored, sea_orm::DbErr> {
    Ok(Stored {
        latency_ms: row.try_get("", "latency_ms")?,
        bandwidth_kbps: row.try_get("", "bandwidth_kbps")?,
        loss: row.try_get("", "loss")?,
        measured_at: row.try_get("", "measured_at")?,
    })
}

/// Every stored pair (a < b) with its measurement, for the mapper's world.
pub async fn all(db: &impl ConnectionTrait) -> AppResult<Vec<(i64, i64, Stored)>> {
    let backend = db.get_database_backend();
    let rows = db
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT node_a, node_b, latency_ms, bandwidth_kbps, loss, measured_at FROM paths",
        ))
        .await?;
    rows.into_iter()
        .map(|row| Ok((row.try_get("", "node_a")?, row.try_get("", "node_b")?, stored(&row)?)))
        .collect()
}
