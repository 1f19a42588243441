//! The portal's view of the testbed: sites, nodes and paths as discovery last read them, the identity of each
//! node across the testbed's renumberings ([`identity`]), the operators' admission thresholds
//! ([`admission`]), and the mapper's world built from all of it ([`world`]).
//!
//! - [`sync`] writes one reading of sites and nodes; [`paths`] one reading of the sensor feed;
//! - [`discovery`] is the reconciler that reads the testbed on a schedule and calls both;
//! - this module answers the pages and the API: listings, a node's page, sites, pending identity decisions.
//!
//! Nodes are testbed-wide: every signed-in caller may read them; only operators change thresholds and decide
//! identities.

pub mod admission;
pub mod discovery;
pub mod identity;
pub mod paths;
pub mod sync;
pub mod world;

use crate::audit;
use crate::auth::Caller;
use crate::db::entity::{NodePool, discovery_run, identity_decision, node, node_event, site};
use crate::error::{AppError, AppResult};
use chrono::{DateTime, Utc};
use model::nodes::{
    CandidateView, Decision, DecisionView, DiscoveryRunView, IdentityEvent, NodeDetail, NodePage, NodeQuery,
    NodeView, PathView, PoolCount, SiteView,
};
use sea_orm::sea_query::{Expr, ExprTrait, Func};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, TransactionSession, TransactionTrait,
};
use serde_json::json;
use std::collections::HashMap;

pub const MAX_PAGE: u64 = 1000;

pub fn require_operator(caller: &Caller) -> AppResult<()> {
    if caller.operator { Ok(()) } else { Err(AppError::forbidden("only operators may do this")) }
}

/// When the last successful sync of nodes ran: what "last seen" means for a node still listed.
pub async fn last_sync(db: &impl ConnectionTrait) -> AppResult<Option<DateTime<Utc>>> {
    Ok(discovery_run::Entity::find()
        .filter(discovery_run::Column::Kind.eq("nodes"))
        .filter(discovery_run::Column::Ok.eq(true))
        .order_by_desc(discovery_run::Column::StartedAt)
        .one(db)
        .await?
        .map(|r| r.started_at))
}

fn view(n: node::Model, site: &str, last_sync: Option<DateTime<Utc>>) -> NodeView {
    let listed = !matches!(n.pool, NodePool::Gone);
    let last_seen = match last_sync {
        Some(t) if listed && t > n.last_seen => t,
        _ => n.last_seen,
    };
    NodeView {
        id: n.id,
        hostname: n.hostname,
        site: site.to_owned(),
        link_class: n.link_class,
        pool: n.pool.as_str().to_owned(),
        ip: n.ip,
        testbed_id: n.testbed_id,
        boot_state: n.boot_state,
        country: n.country,
        first_seen: n.first_seen,
        last_seen,
    }
}

async fn site_names(db: &impl ConnectionTrait) -> AppResult<HashMap<i32, String>> {
    Ok(site::Entity::find().all(db).await?.into_iter().map(|s| (s.id, s.login_base)).collect())
}

/// The filter of a listing, the pool aside (the counts per pool are of everything else it matches).
fn filters(query: &NodeQuery, site_id: Option<i32>) -> AppResult<Condition> {
    let mut cond = Condition::all();
    if query.site.as_deref().is_some_and(|s| !s.trim().is_empty()) {
        cond = cond.add(node::Column::SiteId.eq(site_id.unwrap_or(-1)));
    }
    if let Some(class) = query.class.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
        if !model::topology::LinkClass::ALL.iter().any(|k| k.as_str() == class) {
            return Err(AppError::invalid(
                "class",
                format!("class must be internet2, commodity, international or dsl, not {class:?}"),
            ));
        }
        cond = cond.add(node::Column::LinkClass.eq(class));
    }
    if let Some(q) = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        if q.chars().count() > 256 {
            return Err(AppError::invalid("q", "the search text is at most 256 characters"));
        }
        // `%` and `\` are dropped rather than escaped (SQLite's LIKE has no default escape character); `_`
        // matching any one character does no harm in a search box.
        let like = format!("%{}%", q.to_ascii_lowercase().replace(['\\', '%'], ""));
        cond = cond.add(
            Condition::any()
                .add(Expr::expr(Func::lower(Expr::col(node::Column::Hostname))).like(like.clone()))
                .add(node::Column::Ip.like(like)),
        );
    }
    Ok(cond)
}

/// A page of nodes matching `query`, with the counts per pool.
pub async fn list(db: &impl ConnectionTrait, query: &NodeQuery) -> AppResult<NodePage> {
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_PAGE {
        return Err(AppError::invalid("limit", format!("limit must be 1 to {MAX_PAGE}, not {limit}")));
    }
    let pool = match query.pool.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
        Some(p) => Some(NodePool::parse(p).ok_or_else(|| {
            AppError::invalid("pool", format!("pool must be new, free, down, gone or held, not {p:?}"))
        })?),
        None => None,
    };
    let site_id = match query.site.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(base) => site::Entity::find()
            .filter(site::Column::LoginBase.eq(base.to_ascii_lowercase()))
            .one(db)
            .await?
            .map(|s| s.id),
        None => None,
    };
    let cond = filters(query, site_id)?;
    let counts: Vec<(NodePool, i64)> = node::Entity::find()
        .select_only()
        .column(node::Column::Pool)
        .column_as(node::Column::Id.count(), "n")
        .filter(cond.clone())
        .group_by(node::Column::Pool)
        .into_tuple()
        .all(db)
        .await?;
    let count_of = |p: NodePool| counts.iter().find(|(q, _)| *q == p).map_or(0, |(_, n)| *n as u64);
    let pools = NodePool::ALL
        .iter()
        .map(|p| PoolCount { pool: p.as_str().to_owned(), count: count_of(*p) })
        .collect();
    let total = match pool {
        Some(p) => count_of(p),
        None => counts.iter().map(|(_, n)| *n as u64).sum(),
    };
    let mut find = node::Entity::find().filter(cond);
    if let Some(p) = pool {
        find = find.filter(node::Column::Pool.eq(p));
    }
    let rows = find
        .order_by_asc(node::Column::Hostname)
        .order_by_asc(node::Column::Id)
        .offset(query.offset.unwrap_or(0))
        .limit(limit)
        .all(db)
        .await?;
    let sites = site_names(db).await?;
    let last = last_sync(db).await?;
    let nodes = rows
        .into_iter()
        .map(|n| {
            let site = sites.get(&n.site_id).cloned().unwrap_or_default();
            view(n, &site, last)
        })
        .collect();
    Ok(NodePage { nodes, total, pools })
}

fn parse_json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or(serde_json::Value::Null)
}

/// Node `id` with its identity history and nearest paths.
pub async fn get(db: &impl ConnectionTrait, id: i64) -> AppResult<NodeDetail> {
    let n = node::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found(format!("node {id}")))?;
    let site = site::Entity::find_by_id(n.site_id).one(db).await?.map(|s| s.login_base).unwrap_or_default();
    let identity = node_event::Entity::find()
        .filter(node_event::Column::NodeId.eq(id))
        .order_by_desc(node_event::Column::At)
        .order_by_desc(node_event::Column::Id)
        .limit(200)
        .all(db)
        .await?
        .into_iter()
        .map(|e| IdentityEvent {
            at: e.at,
            kind: e.kind,
            score: e.score,
            old: parse_json(&e.old),
            new: parse_json(&e.new),
            detail: e.detail,
        })
        .collect();
    let paths = paths::nearest(db, id, 20)
        .await?
        .into_iter()
        .map(|(peer_id, peer_hostname, p)| PathView {
            peer_id,
            peer_hostname,
            latency_ms: p.latency_ms,
            bandwidth_kbps: p.bandwidth_kbps,
            loss: p.loss,
            measured_at: p.measured_at,
        })
        .collect();
    let tags = serde_json::from_str(&n.tags).unwrap_or_default();
    let last = last_sync(db).await?;
    Ok(NodeDetail {
        host_key: n.host_key.clone(),
        tags,
        load: n.load,
        memory_free_mb: n.memory_free_mb,
        disk_free_pct: n.disk_free_pct,
        metrics_at: n.metrics_at,
        reliability: n.reliability,
        recent_failures: n.recent_failures,
        identity,
        experiments: Vec::new(),
        paths,
        node: view(n, &site, last),
    })
}

/// Every site with its node counts.
pub async fn sites(db: &impl ConnectionTrait) -> AppResult<Vec<SiteView>> {
    let allow_untested = admission::get(db).await?.allow_untested;
    let counts: Vec<(i32, NodePool, i64)> = node::Entity::find()
        .select_only()
        .column(node::Column::SiteId)
        .column(node::Column::Pool)
        .column_as(node::Column::Id.count(), "n")
        .group_by(node::Column::SiteId)
        .group_by(node::Column::Pool)
        .into_tuple()
        .all(db)
        .await?;
    let mut per_site: HashMap<i32, (u64, u64)> = HashMap::new();
    for (site_id, pool, n) in counts {
        let entry = per_site.entry(site_id).or_default();
        if pool != NodePool::Gone {
            entry.0 += n as u64;
        }
        if pool == NodePool::Free || (allow_untested && pool == NodePool::New) {
            entry.1 += n as u64;
        }
    }
    Ok(site::Entity::find()
        .order_by_asc(site::Column::LoginBase)
        .all(db)
        .await?
        .into_iter()
        .map(|s| {
            let (nodes, allocatable) = per_site.get(&s.id).copied().unwrap_or_default();
            SiteView { login_base: s.login_base, name: s.name, present: s.present, nodes, allocatable }
        })
        .collect())
}

/// The latest discovery runs, newest first.
pub async fn runs(db: &impl ConnectionTrait, limit: u64) -> AppResult<Vec<DiscoveryRunView>> {
    Ok(discovery_run::Entity::find()
        .order_by_desc(discovery_run::Column::StartedAt)
        .order_by_desc(discovery_run::Column::Id)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(|r| DiscoveryRunView {
            kind: r.kind,
            started_at: r.started_at,
            duration_ms: r.duration_ms,
            ok: r.ok,
            counts: parse_json(&r.counts),
            error: r.error,
        })
        .collect())
}

/// Identity decisions waiting for an operator, oldest first.
pub async fn decisions(db: &impl ConnectionTrait) -> AppResult<Vec<DecisionView>> {
    let pending = identity_decision::Entity::find()
        .filter(identity_decision::Column::DecidedAt.is_null())
        .order_by_asc(identity_decision::Column::CreatedAt)
        .all(db)
        .await?;
    let sites = site_names(db).await?;
    let last = last_sync(db).await?;
    let mut out = Vec::with_capacity(pending.len());
    for d in pending {
        let Some(held) = node::Entity::find_by_id(d.node_id).one(db).await? else { continue };
        let mut candidates = Vec::new();
        for c in serde_json::from_str::<Vec<serde_json::Value>>(&d.candidates).unwrap_or_default() {
            let Some(id) = c.get("node_id").and_then(serde_json::Value::as_i64) else { continue };
            let Some(n) = node::Entity::find_by_id(id).one(db).await? else { continue };
            let site = sites.get(&n.site_id).cloned().unwrap_or_default();
            candidates.push(CandidateView {
                node: view(n, &site, last),
                score: c.get("score").and_then(serde_json::Value::as_u64).unwrap_or(0) as u32,
                shared: c
                    .get("shared")
                    .and_then(serde_json::Value::as_array)
                    .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default(),
            });
        }
        let site = sites.get(&held.site_id).cloned().unwrap_or_default();
        out.push(DecisionView {
            id: d.id,
            node: view(held, &site, last),
            candidates,
            reason: d.reason,
            created_at: d.created_at,
        });
    }
    Ok(out)
}

/// Applies an operator's decision about an ambiguous identity. Accepting a candidate moves the held record's
/// attributes onto it (the candidate keeps its id, history and paths; the held duplicate and its events move
/// to it); calling it new releases the held node into the pools and the candidates to what the testbed says
/// (gone, since no record matched them). Either way it is recorded on the nodes and in the audit log.
pub async fn decide<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    now: DateTime<Utc>,
    caller: &Caller,
    decision_id: i64,
    decision: &Decision,
) -> AppResult<()> {
    require_operator(caller)?;
    caller.require_write()?;
    let txn = crate::db::begin_writing(db).await?;
    let d = identity_decision::Entity::find_by_id(decision_id)
        .one(&txn)
        .await?
        .filter(|d| d.decided_at.is_none())
        .ok_or_else(|| AppError::not_found(format!("pending identity decision {decision_id}")))?;
    let candidates = sync::candidate_ids(&d.candidates);
    let held = node::Entity::find_by_id(d.node_id)
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::not_found(format!("node {}", d.node_id)))?;
    let pool_for = |booted: bool| if booted { NodePool::New } else { NodePool::Down };
    let (label, release): (String, Vec<i64>) = match decision {
        Decision::Accept { node_id } => {
            if !candidates.contains(node_id) {
                return Err(AppError::invalid(
                    "node_id",
                    format!("node {node_id} is not a candidate of decision {decision_id}"),
                ));
            }
            let target = node::Entity::find_by_id(*node_id)
                .one(&txn)
                .await?
                .ok_or_else(|| AppError::not_found(format!("node {node_id}")))?;
            if target.pool != NodePool::Held {
                return Err(AppError::conflict(format!(
                    "node {node_id} has since been matched to another testbed record; decide again after the next sync"
                )));
            }
            let old =
                json!({ "testbed_id": target.testbed_id, "hostname": target.hostname, "ip": target.ip });
            let new = json!({ "testbed_id": held.testbed_id, "hostname": held.hostname, "ip": held.ip });
            // Free the held row's identity first (nothing is unique, but keep one row per record).
            node_event::Entity::update_many()
                .col_expr(node_event::Column::NodeId, Expr::value(*node_id))
                .filter(node_event::Column::NodeId.eq(held.id))
                .exec(&txn)
                .await?;
            identity_decision::Entity::update_many()
                .col_expr(identity_decision::Column::NodeId, Expr::value(*node_id))
                .filter(identity_decision::Column::Id.eq(d.id))
                .exec(&txn)
                .await?;
            let booted = held.boot_state == "boot";
            let mut row: node::ActiveModel = target.clone().into();
            row.testbed_id = Set(held.testbed_id);
            row.hostname = Set(held.hostname.clone());
            row.ip = Set(held.ip.clone());
            row.host_key = Set(held.host_key.clone());
            row.link_class = Set(held.link_class.clone());
            row.country = Set(held.country.clone());
            row.boot_state = Set(held.boot_state.clone());
            row.tags = Set(held.tags.clone());
            row.cpu_cores = Set(held.cpu_cores);
            row.memory_mb = Set(held.memory_mb);
            row.disk_gb = Set(held.disk_gb);
            row.last_seen = Set(held.last_seen);
            row.gone_at = Set(None);
            row.pool = Set(pool_for(booted));
            row.updated_at = Set(now);
            row.update(&txn).await?;
            // The held duplicate's measured paths are the accepted node's from now on (the feed names
            // them by the hostname they share); the next round of the feed stores them under its id.
            let backend = txn.get_database_backend();
            let sql = match backend {
                sea_orm::DatabaseBackend::Postgres => "DELETE FROM paths WHERE node_a = $1 OR node_b = $1",
                _ => "DELETE FROM paths WHERE node_a = ?1 OR node_b = ?1",
            };
            txn.execute_raw(sea_orm::Statement::from_sql_and_values(backend, sql, [held.id.into()])).await?;
            node::Entity::delete_by_id(held.id).exec(&txn).await?;
            insert_event(
                &txn,
                *node_id,
                now,
                &old,
                &new,
                &format!("operator accepted the match (held node {} merged)", held.id),
            )
            .await?;
            let others = candidates.iter().copied().filter(|c| c != node_id).collect();
            (format!("accept:{node_id}"), others)
        }
        Decision::New => {
            let mut row: node::ActiveModel = held.clone().into();
            row.pool = Set(pool_for(held.boot_state == "boot"));
            row.updated_at = Set(now);
            row.update(&txn).await?;
            insert_event(&txn, held.id, now, &json!({}), &json!({}), "operator: a new node").await?;
            ("new".to_owned(), candidates.clone())
        }
    };
    // Candidates not taken: the testbed listed no record for them (else they would not be held), so gone.
    for id in release {
        if let Some(n) = node::Entity::find_by_id(id).one(&txn).await?
            && n.pool == NodePool::Held
        {
            let mut row: node::ActiveModel = n.into();
            row.pool = Set(NodePool::Gone);
            row.gone_at = Set(Some(now));
            row.updated_at = Set(now);
            row.update(&txn).await?;
            insert_event(&txn, id, now, &json!({}), &json!({}), "operator: not the held record; gone")
                .await?;
        }
    }
    let mut row: identity_decision::ActiveModel = d.clone().into();
    row.decided_at = Set(Some(now));
    row.decision = Set(Some(label.clone()));
    row.decided_by = Set(Some(caller.user_id));
    row.update(&txn).await?;
    audit::record(
        &txn,
        now,
        Some(caller.user_id),
        "node.identity.decide",
        &format!("decision:{decision_id}"),
        json!({ "decision": label }),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

async fn insert_event(
    db: &impl ConnectionTrait,
    node_id: i64,
    at: DateTime<Utc>,
    old: &serde_json::Value,
    new: &serde_json::Value,
    detail: &str,
) -> AppResult<()> {
    sync::event(node_id, at, "decided", None, old.to_string(), new.to_string(), detail.to_owned())
        .insert(db)
        .await?;
    Ok(())
}

/// Nodes per pool (for the operators' page and tests).
pub async fn pool_counts(db: &impl ConnectionTrait) -> AppResult<HashMap<NodePool, u64>> {
    let page = list(db, &NodeQuery { limit: Some(1), ..NodeQuery::default() }).await?;
    Ok(page.pools.iter().filter_map(|c| NodePool::parse(&c.pool).map(|p| (p, c.count))).collect())
}
