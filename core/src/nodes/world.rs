//! The mapper's world ([`MapWorld`], the `portolan map --world` format) built from the database: the nodes
//! that may be lent, with their latest metrics and reliability, and the measured paths between them.
//!
//! Allocatable means listed, not held, and in pool `free` (or `new`, while the operators lend untested
//! nodes). A node's load, free memory, free disk and metric age are its service sliver's latest heartbeat's
//! (`crate::slivers::ingest`), unknown (`null`) until the first: an unknown metric never passes a threshold
//! that needs it. Its reliability and recent failures come from its pool history
//! (`crate::liveness::stats::refresh_reliability`).
//! Candidate ids are Portolan's node ids; paths carry their age at `now`. Admission thresholds are not
//! applied here: the mapper applies them (and explains what they excluded).

use super::paths;
use crate::db::entity::{NodePool, node, site};
use crate::error::AppResult;
use chrono::{DateTime, Utc};
use model::topology::LinkClass;
use model::world::{CandidateNode, MapWorld, MeasuredPath};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};
use std::collections::{HashMap, HashSet};

/// The pools whose nodes may be lent.
pub fn allocatable_pools(allow_untested: bool) -> Vec<NodePool> {
    if allow_untested { vec![NodePool::Free, NodePool::New] } else { vec![NodePool::Free] }
}

fn link_class(text: &str) -> LinkClass {
    LinkClass::ALL.into_iter().find(|c| c.as_str() == text).unwrap_or(LinkClass::Commodity)
}

/// The world the mapper would see at `now`.
pub async fn build(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    allow_untested: bool,
) -> AppResult<MapWorld> {
    let nodes = candidates(db, now, allow_untested).await?;
    let ids: HashSet<u64> = nodes.iter().map(|n| n.id).collect();
    let age = |t: DateTime<Utc>| (now - t).as_seconds_f64().max(0.0);
    let mut paths: Vec<MeasuredPath> = paths::all(db)
        .await?
        .into_iter()
        .filter(|(a, b, _)| ids.contains(&(*a as u64)) && ids.contains(&(*b as u64)))
        .map(|(a, b, p)| MeasuredPath {
            a: a as u64,
            b: b as u64,
            latency_ms: p.latency_ms,
            bandwidth_kbps: p.bandwidth_kbps,
            loss: p.loss,
            age_s: age(p.measured_at),
        })
        .collect();
    paths.sort_by_key(|p| (p.a, p.b));
    Ok(MapWorld { nodes, paths })
}

/// The world's nodes alone: the allocatable nodes with their metrics, by id.
pub async fn candidates(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    allow_untested: bool,
) -> AppResult<Vec<CandidateNode>> {
    let sites: HashMap<i32, String> =
        site::Entity::find().all(db).await?.into_iter().map(|s| (s.id, s.login_base)).collect();
    let rows = node::Entity::find()
        .filter(node::Column::Pool.is_in(allocatable_pools(allow_untested)))
        .order_by_asc(node::Column::Id)
        .all(db)
        .await?;
    let age = |t: Option<DateTime<Utc>>| t.map(|t| (now - t).as_seconds_f64().max(0.0));
    let mut seen_hosts = HashSet::new();
    let nodes: Vec<CandidateNode> = rows
        .into_iter()
        // Hostnames are unique among listed nodes; a stale duplicate (a held twin) is left out.
        .filter(|n| seen_hosts.insert(n.hostname.clone()))
        .map(|n| CandidateNode {
            id: n.id as u64,
            hostname: n.hostname,
            site: sites.get(&n.site_id).cloned().unwrap_or_default(),
            link_class: link_class(&n.link_class),
            load: n.load,
            memory_free_mb: n.memory_free_mb,
            disk_free_pct: n.disk_free_pct,
            reliability: n.reliability.clamp(0.0, 1.0),
            recent_failures: u32::try_from(n.recent_failures).unwrap_or(0),
            metric_age_s: age(n.metrics_at),
        })
        .collect();
    Ok(nodes)
}

/// How many stored paths join two allocatable nodes and were measured at or after `since` (all, without
/// `since`): counted by the database, without loading the paths.
pub async fn count_paths(
    db: &impl ConnectionTrait,
    allow_untested: bool,
    since: Option<DateTime<Utc>>,
) -> AppResult<u64> {
    use sea_orm::{DatabaseBackend, Statement};
    let backend = db.get_database_backend();
    let pools = allocatable_pools(allow_untested)
        .iter()
        .map(|p| format!("'{}'", p.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let mut sql = format!(
        "SELECT COUNT(*) AS n FROM paths p JOIN nodes a ON a.id = p.node_a JOIN nodes b ON b.id = p.node_b \
         WHERE a.pool IN ({pools}) AND b.pool IN ({pools})"
    );
    let mut values: Vec<sea_orm::Value> = Vec::new();
    if let Some(since) = since {
        sql.push_str(if backend == DatabaseBackend::Postgres {
            " AND p.measured_at >= $1"
        } else {
            " AND p.measured_at >= ?"
        });
        values.push(since.into());
    }
    let row = db.query_one_raw(Statement::from_sql_and_values(backend, sql, values)).await?;
    Ok(row.map(|r| r.try_get::<i64>("", "n")).transpose()?.unwrap_or(0) as u64)
}
