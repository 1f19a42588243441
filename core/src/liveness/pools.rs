//! Pool changes from liveness checks, each recorded in `pool_events` with its reason, and the next check
//! scheduled ([`super::schedule`]). A node that is `gone` or `held` is discovery's and the operators': checks
//! do not move it (its counters still do not change), so a late outcome of a node that has just left cannot
//! bring it back.

use super::schedule;
use crate::db::entity::{NodePool, node, pool_event};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set};

/// Records that `node_id` moved from `from` to `to` because of `reason`.
pub async fn record(
    txn: &impl ConnectionTrait,
    node_id: i64,
    from: NodePool,
    to: NodePool,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    pool_event::ActiveModel {
        node_id: Set(node_id),
        at: Set(now),
        from_pool: Set(from),
        to_pool: Set(to),
        reason: Set(reason.to_owned()),
        ..Default::default()
    }
    .insert(txn)
    .await?;
    Ok(())
}

fn checkable(pool: NodePool) -> bool {
    matches!(pool, NodePool::New | NodePool::Free | NodePool::Down)
}

/// A failed check: the node goes down, one more consecutive failure, re-tested after the backoff. Answers
/// when (`None`: the node is not the checks' to move).
pub async fn check_failed(
    txn: &impl ConnectionTrait,
    node_id: i64,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, DbErr> {
    checked(txn, node_id, false, reason, now).await
}

/// A passed check: the node is free, one more consecutive good check, re-checked later. Answers when
/// (`None`: the node is not the checks' to move).
pub async fn check_passed(
    txn: &impl ConnectionTrait,
    node_id: i64,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, DbErr> {
    checked(txn, node_id, true, reason, now).await
}

async fn checked(
    txn: &impl ConnectionTrait,
    node_id: i64,
    passed: bool,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, DbErr> {
    let Some(row) = node::Entity::find_by_id(node_id).one(txn).await? else { return Ok(None) };
    if !checkable(row.pool) {
        return Ok(None);
    }
    let (pool, failures, successes, wait) = if passed {
        let successes = row.check_successes.saturating_add(1);
        (NodePool::Free, 0, successes, schedule::after_successes(successes.unsigned_abs()))
    } else {
        let failures = row.check_failures.saturating_add(1);
        (NodePool::Down, failures, 0, schedule::after_failures(failures.unsigned_abs()))
    };
    let due = now + wait + schedule::jitter();
    node::Entity::update_many()
        .col_expr(node::Column::Pool, Expr::value(pool))
        .col_expr(node::Column::CheckFailures, Expr::value(failures))
        .col_expr(node::Column::CheckSuccesses, Expr::value(successes))
        .col_expr(node::Column::LastCheckAt, Expr::value(Some(now)))
        .col_expr(node::Column::DueAt, Expr::value(Some(due)))
        .col_expr(node::Column::UpdatedAt, Expr::value(now))
        .filter(node::Column::Id.eq(node_id))
        .exec(txn)
        .await?;
    if row.pool != pool {
        record(txn, node_id, row.pool, pool, reason, now).await?;
    }
    Ok(Some(due))
}
