//! Statistics from the records: a node's lifetime from its pool history (`pool_events`) — availability over
//! a day and a week, mean time between failures, set-up success rate — which also feed the mapper's
//! `reliability` and `recent_failures`; the pools' counts over time; and the provisioning statistics from the
//! bring-up attempts (`sliver_attempts`): durations p50/p95/p99 and failure rates per step, per API
//! generation, per site and per day.

use crate::db::entity::{NodePool, SliverKind, node, pool_event, site, sliver, sliver_attempt};
use crate::error::{AppError, AppResult};
use chrono::{DateTime, TimeDelta, Utc};
use model::slivers::{
    AttemptStats, Lifetime, NodeLiveness, PoolCountsPoint, PoolEventView, ProvisioningStats, RetestItem,
    SliverView, StepStats,
};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use std::collections::{BTreeMap, HashMap};

const DAY: TimeDelta = TimeDelta::days(1);
const WEEK: TimeDelta = TimeDelta::weeks(1);
/// The bring-up steps in order (an attempt that failed at one reached all before it).
const STEPS: [&str; 7] = ["bind", "wait", "connect", "install", "configure", "start", "heartbeat"];

/// Time spent free and failures (free → down) over `[from, now]`, given the node's events in that window
/// (oldest first) and its pool now.
fn free_time(
    events: &[&pool_event::Model],
    pool_now: NodePool,
    from: DateTime<Utc>,
    now: DateTime<Utc>,
) -> (TimeDelta, u32) {
    let mut state = events.first().map_or(pool_now, |e| e.from_pool);
    let (mut t, mut free, mut failures) = (from, TimeDelta::zero(), 0);
    for e in events {
        if state == NodePool::Free {
            free += e.at - t;
        }
        if e.from_pool == NodePool::Free && e.to_pool == NodePool::Down {
            failures += 1;
        }
        state = e.to_pool;
        t = e.at;
    }
    if state == NodePool::Free {
        free += now - t;
    }
    (free, failures)
}

/// The share of the window spent free, failures in it, and the free time. The window is the last `span`,
/// from the node's first liveness check at the earliest (`first_check`; before it the node's fitness was not
/// known, and a node waiting for its first test is not unavailable); `None` for a node never checked or an
/// empty window.
fn window(
    events: &[pool_event::Model],
    n: &node::Model,
    first_check: Option<DateTime<Utc>>,
    span: TimeDelta,
    now: DateTime<Utc>,
) -> (Option<f64>, u32, TimeDelta) {
    let Some(first_check) = first_check else { return (None, 0, TimeDelta::zero()) };
    let from = (now - span).max(n.first_seen).max(first_check);
    let within: Vec<&pool_event::Model> = events.iter().filter(|e| e.at >= from && e.at <= now).collect();
    let length = now - from;
    if length <= TimeDelta::zero() {
        return (None, 0, TimeDelta::zero());
    }
    let (free, failures) = free_time(&within, n.pool, from, now);
    (Some(free.as_seconds_f64() / length.as_seconds_f64()), failures, free)
}

fn lifetime_of(
    events: &[pool_event::Model],
    n: &node::Model,
    first_check: Option<DateTime<Utc>>,
    attempts: (u32, u32),
    now: DateTime<Utc>,
) -> Lifetime {
    let (day, _, _) = window(events, n, first_check, DAY, now);
    let (week, failures, free) = window(events, n, first_check, WEEK, now);
    Lifetime {
        availability_day: day,
        availability_week: week,
        mtbf_s: (failures > 0).then(|| free.as_seconds_f64() / f64::from(failures)),
        failures_week: failures,
        attempts: attempts.0,
        successes: attempts.1,
    }
}

async fn events_since(
    db: &impl ConnectionTrait,
    node_id: Option<i64>,
    since: DateTime<Utc>,
) -> Result<Vec<pool_event::Model>, DbErr> {
    let mut query = pool_event::Entity::find().filter(pool_event::Column::At.gte(since));
    if let Some(id) = node_id {
        query = query.filter(pool_event::Column::NodeId.eq(id));
    }
    query.order_by_asc(pool_event::Column::At).order_by_asc(pool_event::Column::Id).all(db).await
}

/// Pool changes made by liveness checks have reasons that start so (see `crate::liveness`).
const CHECK_REASON: &str = "service sliver";

/// When each node (or just `node_id`) was first checked by liveness: its first pool change with a check's
/// reason.
async fn first_checks(
    db: &impl ConnectionTrait,
    node_id: Option<i64>,
) -> Result<HashMap<i64, DateTime<Utc>>, DbErr> {
    let mut query = pool_event::Entity::find()
        .select_only()
        .column(pool_event::Column::NodeId)
        .column_as(pool_event::Column::At.min(), "first")
        .filter(pool_event::Column::Reason.starts_with(CHECK_REASON))
        .group_by(pool_event::Column::NodeId);
    if let Some(id) = node_id {
        query = query.filter(pool_event::Column::NodeId.eq(id));
    }
    let rows: Vec<(i64, DateTime<Utc>)> = query.into_tuple().all(db).await?;
    Ok(rows.into_iter().collect())
}

async fn service_attempts(db: &impl ConnectionTrait, node_id: i64) -> Result<(u32, u32), DbErr> {
    let rows: Vec<(Option<String>,)> = sliver_attempt::Entity::find()
        .select_only()
        .column(sliver_attempt::Column::FailedStep)
        .filter(sliver_attempt::Column::NodeId.eq(node_id))
        .filter(sliver_attempt::Column::Kind.eq("service"))
        .into_tuple()
        .all(db)
        .await?;
    let successes = rows.iter().filter(|(f,)| f.is_none()).count();
    Ok((rows.len() as u32, successes as u32))
}

fn sliver_view(s: sliver::Model) -> SliverView {
    SliverView {
        id: s.id,
        kind: match s.kind {
            SliverKind::Service => "service".into(),
            SliverKind::Experiment => "experiment".into(),
        },
        slice: s.slice_name,
        node_id: s.node_id,
        step: s.step.as_str().into(),
        health: s.health.as_str().into(),
        up_at: s.up_at,
        last_heartbeat_at: s.last_heartbeat_at,
        heartbeats: s.heartbeats,
        last_error: s.last_error,
        error_step: s.error_step,
        error_class: s.error_class,
        manifest_version: s.manifest_version,
        startup: s.startup,
    }
}

/// Everything the node page shows of liveness.
pub async fn node_liveness(
    db: &impl ConnectionTrait,
    node_id: i64,
    now: DateTime<Utc>,
) -> AppResult<NodeLiveness> {
    let n = node::Entity::find_by_id(node_id)
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found(format!("node {node_id}")))?;
    let events = events_since(db, Some(node_id), now - WEEK).await?;
    let attempts = service_attempts(db, node_id).await?;
    let service = sliver::Entity::find()
        .filter(sliver::Column::NodeId.eq(node_id))
        .filter(sliver::Column::Kind.eq(SliverKind::Service))
        .one(db)
        .await?;
    let history = pool_event::Entity::find()
        .filter(pool_event::Column::NodeId.eq(node_id))
        .order_by_desc(pool_event::Column::At)
        .order_by_desc(pool_event::Column::Id)
        .limit(100)
        .all(db)
        .await?;
    Ok(NodeLiveness {
        node_id,
        pool: n.pool.as_str().into(),
        check_failures: n.check_failures,
        next_check_at: n.due_at,
        service_sliver: service.map(sliver_view),
        lifetime: lifetime_of(
            &events,
            &n,
            first_checks(db, Some(node_id)).await?.get(&node_id).copied(),
            attempts,
            now,
        ),
        pool_history: history.into_iter().map(event_view).collect(),
    })
}

fn event_view(e: pool_event::Model) -> PoolEventView {
    PoolEventView {
        at: e.at,
        from: e.from_pool.as_str().into(),
        to: e.to_pool.as_str().into(),
        reason: e.reason,
    }
}

/// A node's pool history, newest first.
pub async fn pool_history(
    db: &impl ConnectionTrait,
    node_id: i64,
    limit: u64,
) -> AppResult<Vec<PoolEventView>> {
    node::Entity::find_by_id(node_id)
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found(format!("node {node_id}")))?;
    let rows = pool_event::Entity::find()
        .filter(pool_event::Column::NodeId.eq(node_id))
        .order_by_desc(pool_event::Column::At)
        .order_by_desc(pool_event::Column::Id)
        .limit(limit)
        .all(db)
        .await?;
    Ok(rows.into_iter().map(event_view).collect())
}

/// Rewrites every checked node's `reliability` (its availability over the week, from its first check on)
/// and `recent_failures` (failures over the week): what the mapper weighs. A node never checked keeps its
/// placeholder (1, no failures). Writes only what changed; answers
/// how many nodes.
pub async fn refresh_reliability(db: &impl ConnectionTrait, now: DateTime<Utc>) -> Result<u64, DbErr> {
    let nodes = node::Entity::find().filter(node::Column::Pool.ne(NodePool::Gone)).all(db).await?;
    let mut by_node: HashMap<i64, Vec<pool_event::Model>> = HashMap::new();
    for e in events_since(db, None, now - WEEK).await? {
        by_node.entry(e.node_id).or_default().push(e);
    }
    let first_checks = first_checks(db, None).await?;
    let mut written = 0;
    for n in nodes {
        let events = by_node.remove(&n.id).unwrap_or_default();
        let Some(first) = first_checks.get(&n.id).copied() else { continue };
        let (week, failures, _) = window(&events, &n, Some(first), WEEK, now);
        let reliability = (week.unwrap_or(1.0) * 1000.0).round() / 1000.0;
        let failures = i32::try_from(failures).unwrap_or(i32::MAX);
        if (reliability - n.reliability).abs() < 1e-9 && failures == n.recent_failures {
            continue;
        }
        node::Entity::update_many()
            .col_expr(node::Column::Reliability, Expr::value(reliability))
            .col_expr(node::Column::RecentFailures, Expr::value(failures))
            .filter(node::Column::Id.eq(n.id))
            .exec(db)
            .await?;
        written += 1;
    }
    Ok(written)
}

/// The pools' counts at `points` evenly spaced times from `since` to `now`: today's counts, walked back
/// through the events in between.
pub async fn pool_counts_over_time(
    db: &impl ConnectionTrait,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
    points: u32,
) -> AppResult<Vec<PoolCountsPoint>> {
    let points = points.clamp(2, 500);
    let mut counts: HashMap<NodePool, i64> = HashMap::new();
    let pools: Vec<(NodePool,)> =
        node::Entity::find().select_only().column(node::Column::Pool).into_tuple().all(db).await?;
    for (p,) in pools {
        *counts.entry(p).or_default() += 1;
    }
    let mut events = events_since(db, None, since).await?;
    events.reverse(); // newest first
    let step = (now - since) / i32::try_from(points - 1).unwrap_or(1);
    let mut out = Vec::with_capacity(points as usize);
    let mut next = events.iter().peekable();
    for i in (0..points).rev() {
        let at = since + step * i32::try_from(i).unwrap_or(0);
        // Undo every event after `at`.
        while let Some(e) = next.next_if(|e| e.at > at) {
            *counts.entry(e.to_pool).or_default() -= 1;
            if e.from_pool != e.to_pool || e.reason != "discovery: appeared" {
                *counts.entry(e.from_pool).or_default() += 1;
            }
        }
        let get = |p| u32::try_from(counts.get(&p).copied().unwrap_or(0).max(0)).unwrap_or(0);
        out.push(PoolCountsPoint {
            at,
            new: get(NodePool::New),
            free: get(NodePool::Free),
            down: get(NodePool::Down),
            gone: get(NodePool::Gone),
            held: get(NodePool::Held),
        });
    }
    out.reverse();
    Ok(out)
}

/// The next checks, soonest first.
pub async fn retest_queue(db: &impl ConnectionTrait, limit: u64) -> AppResult<Vec<RetestItem>> {
    let rows = super::queue(db, limit).await?;
    Ok(rows
        .into_iter()
        .filter_map(|n| {
            Some(RetestItem {
                node_id: n.id,
                hostname: n.hostname,
                pool: n.pool.as_str().into(),
                due_at: n.due_at?,
                check_failures: n.check_failures,
            })
        })
        .collect())
}

/// The value at quantile `q` of sorted `values` (nearest rank).
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

fn group_stats(group: String, attempts: &[&sliver_attempt::Model]) -> AttemptStats {
    let failures = attempts.iter().filter(|a| a.failed_step.is_some()).count() as u32;
    let mut ok: Vec<f64> = attempts.iter().filter(|a| a.failed_step.is_none()).map(|a| a.seconds).collect();
    ok.sort_by(f64::total_cmp);
    let n = attempts.len() as u32;
    AttemptStats {
        group,
        attempts: n,
        failures,
        failure_rate: (n > 0).then(|| f64::from(failures) / f64::from(n)),
        p50_s: quantile(&ok, 0.50),
        p95_s: quantile(&ok, 0.95),
        p99_s: quantile(&ok, 0.99),
    }
}

fn grouped(
    attempts: &[sliver_attempt::Model],
    key: impl Fn(&sliver_attempt::Model) -> String,
) -> BTreeMap<String, Vec<&sliver_attempt::Model>> {
    let mut groups: BTreeMap<String, Vec<&sliver_attempt::Model>> = BTreeMap::new();
    for a in attempts {
        groups.entry(key(a)).or_default().push(a);
    }
    groups
}

/// The provisioning statistics of the attempts that finished since `since`.
pub async fn provisioning(db: &impl ConnectionTrait, since: DateTime<Utc>) -> AppResult<ProvisioningStats> {
    let attempts = sliver_attempt::Entity::find()
        .filter(sliver_attempt::Column::FinishedAt.gte(since))
        .order_by_asc(sliver_attempt::Column::FinishedAt)
        .limit(200_000)
        .all(db)
        .await?;
    let all: Vec<&sliver_attempt::Model> = attempts.iter().collect();
    let steps = STEPS
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let reached = attempts
                .iter()
                .filter(|a| {
                    a.failed_step
                        .as_deref()
                        .is_none_or(|f| STEPS.iter().position(|s| s == &f).is_none_or(|p| p >= i))
                })
                .count() as u32;
            let failed = attempts.iter().filter(|a| a.failed_step.as_deref() == Some(step)).count() as u32;
            StepStats {
                step: (*step).to_owned(),
                reached,
                failed,
                failure_rate: (reached > 0).then(|| f64::from(failed) / f64::from(reached)),
            }
        })
        .collect();
    let sites: HashMap<i32, String> =
        site::Entity::find().all(db).await?.into_iter().map(|s| (s.id, s.login_base)).collect();
    let stats = |groups: BTreeMap<String, Vec<&sliver_attempt::Model>>| -> Vec<AttemptStats> {
        groups.into_iter().map(|(g, a)| group_stats(g, &a)).collect()
    };
    let mut by_site = stats(grouped(&attempts, |a| {
        sites.get(&a.site_id).cloned().unwrap_or_else(|| a.site_id.to_string())
    }));
    by_site.sort_by(|a, b| b.attempts.cmp(&a.attempts).then_with(|| a.group.cmp(&b.group)));
    by_site.truncate(50);
    Ok(ProvisioningStats {
        since,
        overall: group_stats("all".to_owned(), &all),
        steps,
        by_generation: stats(grouped(&attempts, |a| a.generation.clone())),
        by_site,
        by_day: stats(grouped(&attempts, |a| a.finished_at.format("%Y-%m-%d").to_string())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + h * 3600, 0).unwrap()
    }

    fn event(h: i64, from: NodePool, to: NodePool) -> pool_event::Model {
        pool_event::Model {
            id: h,
            node_id: 1,
            at: at(h),
            from_pool: from,
            to_pool: to,
            reason: String::new(),
        }
    }

    #[test]
    fn free_time_counts_only_free_spans_and_free_to_down_failures() {
        use NodePool::*;
        let events = [event(2, New, Free), event(6, Free, Down), event(8, Down, Free)];
        let refs: Vec<&pool_event::Model> = events.iter().collect();
        let (free, failures) = free_time(&refs, Free, at(0), at(10));
        assert_eq!(free, TimeDelta::hours(4 + 2), "free 2–6 and 8–10");
        assert_eq!(failures, 1);
        let (free, failures) = free_time(&[], Free, at(0), at(10));
        assert_eq!((free, failures), (TimeDelta::hours(10), 0), "free all along");
    }

    #[test]
    fn quantiles_take_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), Some(50.0));
        assert_eq!(quantile(&v, 0.95), Some(95.0));
        assert_eq!(quantile(&v, 0.99), Some(99.0));
        assert_eq!(quantile(&[7.0], 0.99), Some(7.0));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
