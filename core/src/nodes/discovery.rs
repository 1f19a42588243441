//! Discovery: the reconciler that keeps the portal's sites, nodes and paths in line with the testbed.
//!
//! Two singleton tasks of `reconcile_tasks` (kind `discovery`, keys `nodes` and `paths`), each on its own
//! schedule of portal time. A pass claims its task (so that of several `serve` processes on one database
//! exactly one works at a time, and another takes over if that one dies), reads the testbed, applies the
//! reading ([`super::sync`] or [`super::paths`]) in one transaction, records the run for the operators'
//! page, and releases the task with its next due time. A testbed that cannot be reached, or refuses the
//! credentials, fails the pass: the error is recorded and logged, the task is retried with backoff, and
//! nothing stored is touched.

use super::{paths, sync};
use crate::clock::Clock;
use crate::db::claim::{self, Leased, Owner};
use crate::db::entity::discovery_run;
use crate::error::AppResult;
use crate::testbed::Testbed;
use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use std::sync::Arc;
use std::time::Instant;

pub const KIND: &str = "discovery";

/// How often discovery runs (portal time).
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    pub nodes_every: TimeDelta,
    pub paths_every: TimeDelta,
    /// How long a pass may hold its task before another process may take it over.
    pub lease: TimeDelta,
}

impl Default for Schedule {
    fn default() -> Self {
        Self {
            nodes_every: TimeDelta::minutes(5),
            paths_every: TimeDelta::minutes(15),
            lease: TimeDelta::minutes(10),
        }
    }
}

/// After a failed pass the task is due again after this, doubled per consecutive failure, at most
/// [`MAX_RETRY`].
pub const FIRST_RETRY: TimeDelta = TimeDelta::seconds(30);
pub const MAX_RETRY: TimeDelta = TimeDelta::minutes(10);

/// Runs kept per kind.
pub const KEEP_RUNS: u64 = 200;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    Nodes,
    Paths,
}

impl Task {
    pub fn key(self) -> &'static str {
        match self {
            Task::Nodes => "nodes",
            Task::Paths => "paths",
        }
    }

    /// The supervisor's name for the task's loop.
    pub fn loop_name(self) -> &'static str {
        match self {
            Task::Nodes => "discovery-nodes",
            Task::Paths => "discovery-paths",
        }
    }
}

/// What one pass did.
#[derive(Clone, Debug, PartialEq)]
pub enum Pass {
    /// The task was not due, or another process holds it.
    Skipped,
    Nodes(sync::SyncReport),
    Paths(paths::PathReport),
    /// The pass failed (the testbed, or the database); recorded, retried later.
    Failed(String),
}

#[derive(Clone, Debug)]
pub struct Discovery {
    pub db: DatabaseConnection,
    pub clock: Clock,
    pub testbed: Arc<dyn Testbed>,
    pub schedule: Schedule,
    owner: Owner,
}

impl Discovery {
    pub fn new(db: DatabaseConnection, clock: Clock, testbed: Arc<dyn Testbed>, schedule: Schedule) -> Self {
        Self { db, clock, testbed, schedule, owner: Owner::new(KIND) }
    }

    /// One pass of `task`, if it is due and nobody else holds it.
    pub async fn pass(&self, task: Task) -> AppResult<Pass> {
        let now = self.clock.now();
        claim::ensure_task(&self.db, KIND, task.key(), now, now).await?;
        let leased = Leased::tasks(KIND).only("key", task.key());
        let Some(held) = leased.claim(&self.db, &self.owner, now, self.schedule.lease, 1).await?.pop() else {
            return Ok(Pass::Skipped);
        };
        let started = Instant::now();
        // What changed, for the run's record: the report as JSON.
        let outcome = match task {
            Task::Nodes => self
                .sync_nodes(now)
                .await
                .map(|r| (serde_json::to_value(&r).unwrap_or_default(), Pass::Nodes(r))),
            Task::Paths => self
                .sync_paths(now)
                .await
                .map(|r| (serde_json::to_value(&r).unwrap_or_default(), Pass::Paths(r))),
        };
        let elapsed = started.elapsed();
        let (pass, counts, error) = match outcome {
            Ok((counts, pass)) => (pass, counts, None),
            Err(why) => {
                tracing::warn!(task = task.key(), "discovery failed: {why}");
                (Pass::Failed(why.clone()), serde_json::json!({}), Some(why))
            }
        };
        self.record(task, now, elapsed, &counts, error.as_deref()).await?;
        let attempts = claim::task_attempts(&self.db, KIND, task.key()).await?;
        let next = match error {
            None => match task {
                Task::Nodes => self.schedule.nodes_every,
                Task::Paths => self.schedule.paths_every,
            },
            Some(_) => retry_after(attempts),
        };
        let done = self.clock.now();
        claim::finish_task(&self.db, held, Some(done + next), error.as_deref(), done).await?;
        Ok(pass)
    }

    async fn sync_nodes(&self, now: DateTime<Utc>) -> Result<sync::SyncReport, String> {
        let (sites, nodes) =
            tokio::try_join!(self.testbed.sites(), self.testbed.nodes()).map_err(|e| e.to_string())?;
        // The generation: asked of a node that should be up; a switch is logged by the client and shows in
        // the runs on the operators' page.
        let mut generation = None;
        if let Some(probe) = nodes.iter().find(|n| n.booted()) {
            generation = self.testbed.generation(&probe.hostname).await.ok();
        }
        let mut report = sync::apply(&self.db, now, &sites, &nodes).await.map_err(|e| e.to_string())?;
        report.generation = generation.map(|g| g.as_str().to_owned());
        Ok(report)
    }

    async fn sync_paths(&self, now: DateTime<Utc>) -> Result<paths::PathReport, String> {
        let feed = self.testbed.paths().await.map_err(|e| e.to_string())?;
        paths::apply(&self.db, now, &feed).await.map_err(|e| e.to_string())
    }

    async fn record(
        &self,
        task: Task,
        started_at: DateTime<Utc>,
        elapsed: std::time::Duration,
        counts: &serde_json::Value,
        error: Option<&str>,
    ) -> AppResult<()> {
        discovery_run::ActiveModel {
            kind: Set(task.key().to_owned()),
            started_at: Set(started_at),
            duration_ms: Set(i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)),
            ok: Set(error.is_none()),
            counts: Set(counts.to_string()),
            error: Set(error.map(str::to_owned)),
            ..Default::default()
        }
        .insert(&self.db)
        .await?;
        // Keep the latest runs of the kind.
        let keep: Vec<i64> = discovery_run::Entity::find()
            .select_only()
            .column(discovery_run::Column::Id)
            .filter(discovery_run::Column::Kind.eq(task.key()))
            .order_by_desc(discovery_run::Column::Id)
            .offset(KEEP_RUNS)
            .limit(1)
            .into_tuple()
            .all(&self.db)
            .await?;
        if let Some(oldest_dropped) = keep.first() {
            discovery_run::Entity::delete_many()
                .filter(discovery_run::Column::Kind.eq(task.key()))
                .filter(Expr::col(discovery_run::Column::Id).lte(*oldest_dropped))
                .exec(&self.db)
                .await?;
        }
        Ok(())
    }
}

/// The wait before retrying after `attempts` consecutive failures (counting the one just recorded).
pub fn retry_after(attempts: i32) -> TimeDelta {
    let doublings = attempts.clamp(0, 10) as u32;
    (FIRST_RETRY * 2i32.pow(doublings)).min(MAX_RETRY)
}
