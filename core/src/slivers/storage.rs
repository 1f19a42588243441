//! The slivers' SQL: rows, steps, attempts and outcomes. Every write that moves a claimed sliver is
//! conditional on the claimer's lease (`lease_owner`), so a claimer that lost its row writes nothing; an
//! outcome (failed, or up end to end) is one transaction with its attempt row and, for a service sliver, the
//! node's pool change ([`crate::liveness::pools`]).

use crate::db::claim::{Claim, Leased};
use crate::db::entity::{Health, SliverKind, SliverStep, node, sliver, sliver_attempt};
use crate::liveness::pools;
use crate::testbed::Class;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, Set,
};

/// Not leased, or the lease ran out.
fn free_at(now: DateTime<Utc>) -> Condition {
    Condition::any().add(sliver::Column::LeaseUntil.is_null()).add(sliver::Column::LeaseUntil.lte(now))
}

type Update = sea_orm::UpdateMany<sliver::Entity>;

/// `update` of the claimed row only, while it is still the claimer's.
fn of_claim(update: Update, claim: &Claim) -> Update {
    update.filter(sliver::Column::Id.eq(claim.id)).filter(sliver::Column::LeaseOwner.eq(claim.owner.as_str()))
}

/// `update` that also gives the row up (its lease cleared).
fn releasing(update: Update) -> Update {
    update
        .col_expr(sliver::Column::LeaseOwner, Expr::value(Option::<String>::None))
        .col_expr(sliver::Column::LeaseUntil, Expr::value(Option::<DateTime<Utc>>::None))
}

/// Runs `update` on the claimed row: whether it was still the claimer's.
async fn on_claim(db: &impl ConnectionTrait, update: Update, claim: &Claim) -> Result<bool, DbErr> {
    Ok(of_claim(update, claim).exec(db).await?.rows_affected == 1)
}

/// Slivers are claimed from their own table.
pub fn leased() -> Leased {
    Leased::table("slivers")
}

/// The sliver of `slice` on `node_id`, made (idle: not due) if there is none.
pub async fn ensure(
    db: &impl ConnectionTrait,
    kind: SliverKind,
    slice: &str,
    node_id: i64,
    now: DateTime<Utc>,
) -> Result<sliver::Model, DbErr> {
    let find = || {
        sliver::Entity::find()
            .filter(sliver::Column::SliceName.eq(slice))
            .filter(sliver::Column::NodeId.eq(node_id))
    };
    if let Some(row) = find().one(db).await? {
        return Ok(row);
    }
    let row = sliver::ActiveModel {
        kind: Set(kind),
        slice_name: Set(slice.to_owned()),
        node_id: Set(node_id),
        step: Set(SliverStep::Bind),
        health: Set(Health::Booting),
        startup: Set("{}".to_owned()),
        polls: Set(0),
        heartbeats: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    };
    match row.insert(db).await {
        Ok(row) => Ok(row),
        // Another process made it first.
        Err(e) if crate::db::is_unique_violation(&e) => {
            find().one(db).await?.ok_or_else(|| DbErr::Custom("the sliver vanished".to_owned()))
        }
        Err(e) => Err(e),
    }
}

/// Starts a new bring-up attempt of an idle sliver (not due, not leased): due now, from `bind`. Answers
/// whether it started one (false: an attempt is under way already).
pub async fn start_attempt(
    db: &impl ConnectionTrait,
    sliver_id: i64,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let result = sliver::Entity::update_many()
        .col_expr(sliver::Column::Step, Expr::value(SliverStep::Bind))
        .col_expr(sliver::Column::Health, Expr::value(Health::Booting))
        .col_expr(sliver::Column::AttemptStartedAt, Expr::value(Some(now)))
        .col_expr(sliver::Column::StepStartedAt, Expr::value(Some(now)))
        .col_expr(sliver::Column::Polls, Expr::value(0))
        .col_expr(sliver::Column::UpdatedAt, Expr::value(now))
        .col_expr(sliver::Column::DueAt, Expr::value(Some(now)))
        .filter(sliver::Column::Id.eq(sliver_id))
        .filter(sliver::Column::DueAt.is_null())
        .filter(free_at(now))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Moves a claimed sliver to `step` (its clock restarted) and releases it, due at `due`. `false`: the claim
/// was lost, nothing written.
pub async fn advance(
    db: &impl ConnectionTrait,
    claim: &Claim,
    step: SliverStep,
    due: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let update = sliver::Entity::update_many()
        .col_expr(sliver::Column::Step, Expr::value(step))
        .col_expr(sliver::Column::StepStartedAt, Expr::value(Some(now)))
        .col_expr(sliver::Column::Polls, Expr::value(0))
        .col_expr(sliver::Column::UpdatedAt, Expr::value(now))
        .col_expr(sliver::Column::DueAt, Expr::value(due));
    on_claim(db, releasing(update), claim).await
}

/// Records the API generation a claimed sliver's attempt is bound under.
pub async fn set_generation(
    db: &impl ConnectionTrait,
    claim: &Claim,
    generation: &str,
) -> Result<bool, DbErr> {
    let update = sliver::Entity::update_many()
        .col_expr(sliver::Column::Generation, Expr::value(Some(generation.to_owned())));
    on_claim(db, update, claim).await
}

/// Counts one more poll of a waiting sliver and releases it, due at `due`.
pub async fn polled(
    db: &impl ConnectionTrait,
    claim: &Claim,
    polls: i32,
    due: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let update = sliver::Entity::update_many()
        .col_expr(sliver::Column::Polls, Expr::value(polls))
        .col_expr(sliver::Column::UpdatedAt, Expr::value(now))
        .col_expr(sliver::Column::DueAt, Expr::value(Some(due)));
    on_claim(db, releasing(update), claim).await
}

/// Stores the hash of a freshly minted credential (the old one stops working at once).
pub async fn set_credential(db: &impl ConnectionTrait, claim: &Claim, hash: &str) -> Result<bool, DbErr> {
    let update = sliver::Entity::update_many()
        .col_expr(sliver::Column::CredentialHash, Expr::value(Some(hash.to_owned())));
    on_claim(db, update, claim).await
}

/// What an attempt row needs to know about where it ran.
#[derive(Clone, Debug)]
pub struct AttemptContext {
    pub site_id: i32,
    pub generation: String,
}

/// Ends a claimed sliver's attempt as failed: the attempt recorded, the sliver down (idle, not due: what
/// happens next is its owner's decision), and a service sliver's node sent to the down pool. One
/// transaction. `false`: the claim was lost, nothing written.
#[expect(clippy::too_many_arguments, reason = "one outcome, told in full")]
pub async fn fail(
    db: &DatabaseConnection,
    claim: &Claim,
    row: &sliver::Model,
    context: &AttemptContext,
    step: SliverStep,
    class: Class,
    message: &str,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let txn = crate::db::begin_writing(db).await?;
    let update = sliver::Entity::update_many()
        .col_expr(sliver::Column::Health, Expr::value(Health::Down))
        .col_expr(sliver::Column::Step, Expr::value(SliverStep::Bind))
        .col_expr(sliver::Column::LastError, Expr::value(Some(message.to_owned())))
        .col_expr(sliver::Column::ErrorStep, Expr::value(Some(step.as_str().to_owned())))
        .col_expr(sliver::Column::ErrorClass, Expr::value(Some(class.as_str().to_owned())))
        .col_expr(sliver::Column::UpdatedAt, Expr::value(now))
        .col_expr(sliver::Column::DueAt, Expr::value(Option::<DateTime<Utc>>::None));
    if !on_claim(&txn, releasing(update), claim).await? {
        txn.rollback().await?;
        return Ok(false);
    }
    record_attempt(&txn, row, context, Some((step, class, message)), now).await?;
    if row.kind == SliverKind::Service {
        let reason = format!("service sliver failed at {}: {message}", step.as_str());
        pools::check_failed(&txn, row.node_id, &reason, now).await?;
    }
    txn.commit().await?;
    Ok(true)
}

/// A sliver's first heartbeat after its agent started: up end to end. The attempt recorded, the sliver
/// `ready` and `up`, a service sliver's node passed. Only for a sliver waiting for that heartbeat (not
/// leased by a claimer right now); answers whether this call made the change.
pub async fn came_up(
    db: &DatabaseConnection,
    row: &sliver::Model,
    context: &AttemptContext,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let txn = crate::db::begin_writing(db).await?;
    let result = sliver::Entity::update_many()
        .col_expr(sliver::Column::Health, Expr::value(Health::Up))
        .col_expr(sliver::Column::Step, Expr::value(SliverStep::Ready))
        .col_expr(sliver::Column::UpAt, Expr::value(Some(now)))
        .col_expr(sliver::Column::LastHeartbeatAt, Expr::value(Some(now)))
        .col_expr(sliver::Column::LastError, Expr::value(Option::<String>::None))
        .col_expr(sliver::Column::ErrorStep, Expr::value(Option::<String>::None))
        .col_expr(sliver::Column::ErrorClass, Expr::value(Option::<String>::None))
        .col_expr(sliver::Column::UpdatedAt, Expr::value(now))
        .col_expr(sliver::Column::DueAt, Expr::value(Option::<DateTime<Utc>>::None))
        .filter(sliver::Column::Id.eq(row.id))
        .filter(sliver::Column::Step.eq(SliverStep::Heartbeat))
        .filter(free_at(now))
        .exec(&txn)
        .await?;
    if result.rows_affected != 1 {
        txn.rollback().await?;
        return Ok(false);
    }
    record_attempt(&txn, row, context, None, now).await?;
    if row.kind == SliverKind::Service {
        pools::check_passed(&txn, row.node_id, "service sliver up end to end", now).await?;
    }
    txn.commit().await?;
    Ok(true)
}

/// A sliver that was `down` for silence heartbeats again: `up`, and a service sliver's node passes.
pub async fn resumed(
    db: &DatabaseConnection,
    row: &sliver::Model,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let txn = crate::db::begin_writing(db).await?;
    let result = sliver::Entity::update_many()
        .col_expr(sliver::Column::Health, Expr::value(Health::Up))
        .col_expr(sliver::Column::LastHeartbeatAt, Expr::value(Some(now)))
        .col_expr(sliver::Column::UpdatedAt, Expr::value(now))
        .filter(sliver::Column::Id.eq(row.id))
        .filter(sliver::Column::Step.eq(SliverStep::Ready))
        .filter(sliver::Column::Health.eq(Health::Down))
        .exec(&txn)
        .await?;
    if result.rows_affected != 1 {
        txn.rollback().await?;
        return Ok(false);
    }
    if row.kind == SliverKind::Service {
        pools::check_passed(&txn, row.node_id, "service sliver heartbeats again", now).await?;
    }
    txn.commit().await?;
    Ok(true)
}

async fn record_attempt(
    txn: &impl ConnectionTrait,
    row: &sliver::Model,
    context: &AttemptContext,
    failure: Option<(SliverStep, Class, &str)>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let started = row.attempt_started_at.unwrap_or(now);
    sliver_attempt::ActiveModel {
        sliver_id: Set(row.id),
        node_id: Set(row.node_id),
        site_id: Set(context.site_id),
        kind: Set(match row.kind {
            SliverKind::Service => "service".to_owned(),
            SliverKind::Experiment => "experiment".to_owned(),
        }),
        generation: Set(context.generation.clone()),
        started_at: Set(started),
        finished_at: Set(now),
        seconds: Set((now - started).as_seconds_f64().max(0.0)),
        failed_step: Set(failure.map(|(step, _, _)| step.as_str().to_owned())),
        class: Set(failure.map(|(_, class, _)| class.as_str().to_owned())),
        error: Set(failure.map(|(_, _, message)| message.to_owned())),
        ..Default::default()
    }
    .insert(txn)
    .await?;
    Ok(())
}

/// The node a sliver is on (for its target and its attempt's site).
pub async fn node_of(db: &impl ConnectionTrait, node_id: i64) -> Result<Option<node::Model>, DbErr> {
    node::Entity::find_by_id(node_id).one(db).await
}
