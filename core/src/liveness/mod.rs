//! Liveness: Portolan's own service sliver on every node, and the pools it decides.
//!
//! A node is fit to lend only when a complete sliver came up on it end to end. So the portal keeps a slice
//! of its own (the *service slice*, e.g. `princeton_portolan`) with a sliver on every node, brought up by
//! [`crate::slivers`] like any other, agent included. Pools follow from it:
//!
//! - `new` (discovered) and `down` nodes are (re-)tested in batches: their service sliver is brought up
//!   again; it coming up end to end (first heartbeat) puts the node in `free`, a failure in `down`;
//! - a `free` node whose service sliver stops heartbeating goes `down` ([`Liveness::sweep`]);
//! - re-tests follow Emulab's schedule ([`schedule`]): after n failures in min(12 h, n²·5 min), healthy
//!   nodes re-checked in min(1 h, 2n·10 min), both with up to 2 min jitter;
//! - `gone` and `held` are discovery's ([`crate::nodes::sync`]); every change is a row of `pool_events`.
//!
//! Nodes are claimed like any reconciled row (`nodes.due_at`), so several `serve` processes share the
//! work; the service slice is created, joined by the portal's key and renewed (by reading back what the
//! testbed granted) by whichever process passes first.

pub mod monitor;
pub mod pools;
pub mod schedule;
pub mod stats;

use crate::clock::Clock;
use crate::db::claim::{Claim, Leased, Owner};
use crate::db::entity::{Health, NodePool, SliverKind, node, site, sliver};
use crate::slivers::storage;
use crate::ssh::Identity;
use crate::testbed::{SliceSpec, Testbed};
use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use std::sync::{Arc, Mutex};

/// How liveness runs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The service slice's name; `None`: `<login_base>_portolan` of the first site (by login base).
    pub service_slice: Option<String>,
    /// The service slice's URL at the testbed (PLC requires one to renew): the portal's.
    pub url: String,
    /// The testbed account the portal acts as (its key joins the service slice as this person).
    pub testbed_user: String,
    /// Nodes (re-)tested per pass.
    pub batch: u32,
    /// Silence after which a sliver is down.
    pub silence: TimeDelta,
    /// How long the service slice's lease is asked to run, renewed when less than half of it is left.
    pub lease: TimeDelta,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            service_slice: None,
            url: "http://127.0.0.1:3000".to_owned(),
            testbed_user: String::new(),
            batch: 64,
            silence: TimeDelta::seconds(120),
            lease: TimeDelta::weeks(4),
        }
    }
}

/// A node in `new`/`down` whose re-test started is looked at again after this at the latest (its sliver's
/// outcome normally schedules it sooner).
const SAFETY_NET: TimeDelta = TimeDelta::hours(2);
/// How often the service slice is checked (created, joined, renewed).
const SLICE_CHECK: TimeDelta = TimeDelta::minutes(10);

#[derive(Debug)]
pub struct Liveness {
    pub db: DatabaseConnection,
    pub clock: Clock,
    pub testbed: Arc<dyn Testbed>,
    pub identity: Identity,
    pub settings: Settings,
    owner: Owner,
    /// The service slice's name and when it was last checked.
    slice: Mutex<Option<(String, DateTime<Utc>)>>,
}

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    pub slice: Option<String>,
    pub tested: usize,
    pub rechecked: usize,
    pub silenced: usize,
}

impl Liveness {
    pub fn new(
        db: DatabaseConnection,
        clock: Clock,
        testbed: Arc<dyn Testbed>,
        identity: Identity,
        settings: Settings,
    ) -> Self {
        Self {
            db,
            clock,
            testbed,
            identity,
            settings,
            owner: Owner::new("liveness"),
            slice: Mutex::new(None),
        }
    }

    /// One pass: the service slice checked, silent slivers swept, a batch of due nodes (re-)tested.
    pub async fn pass(&self) -> Result<Pass, String> {
        let mut pass = Pass { silenced: self.sweep().await.map_err(|e| e.to_string())?, ..Pass::default() };
        let Some(slice) = self.service_slice().await? else { return Ok(pass) };
        pass.slice = Some(slice.clone());
        let now = self.clock.now();
        schedule_new(&self.db, now).await.map_err(|e| e.to_string())?;
        let leased = Leased::table("nodes");
        let lease = TimeDelta::minutes(5);
        let claims = leased
            .claim(&self.db, &self.owner, now, lease, self.settings.batch)
            .await
            .map_err(|e| e.to_string())?;
        for claim in claims {
            match self.check(&slice, claim, now).await.map_err(|e| e.to_string())? {
                Checked::Tested => pass.tested += 1,
                Checked::Rechecked => pass.rechecked += 1,
                Checked::Nothing => {}
            }
        }
        Ok(pass)
    }

    /// The service slice's name, once it exists at the testbed with the portal's key on it and a lease
    /// that runs long enough; `None` while the portal knows no site to name it after.
    async fn service_slice(&self) -> Result<Option<String>, String> {
        let now = self.clock.now();
        if let Some((name, at)) = self.slice.lock().unwrap_or_else(|p| p.into_inner()).clone()
            && now - at < SLICE_CHECK
        {
            return Ok(Some(name));
        }
        let name = match &self.settings.service_slice {
            Some(name) => name.clone(),
            None => {
                let first = site::Entity::find()
                    .order_by_asc(site::Column::LoginBase)
                    .one(&self.db)
                    .await
                    .map_err(|e| e.to_string())?;
                let Some(first) = first else { return Ok(None) };
                format!("{}_portolan", first.login_base)
            }
        };
        let spec = SliceSpec {
            name: name.clone(),
            description: "Portolan's service slice: proves every node live end to end and reports its load"
                .to_owned(),
            url: self.settings.url.clone(),
            instantiation: "plc-instantiated".to_owned(),
            max_nodes: 100_000,
        };
        let slice =
            self.testbed.create_slice(&spec).await.map_err(|e| format!("service slice {name}: {e}"))?;
        let key = self.identity.public_openssh();
        self.testbed
            .add_person_to_slice(&self.settings.testbed_user, &[key], &name)
            .await
            .map_err(|e| format!("adding the portal's key to {name}: {e}"))?;
        if slice.expires - now < self.settings.lease / 2 {
            let granted = self
                .testbed
                .renew_slice(&name, now + self.settings.lease)
                .await
                .map_err(|e| format!("renewing {name}: {e}"))?;
            tracing::info!(slice = %name, expires = %granted.expires, "service slice renewed");
        }
        *self.slice.lock().unwrap_or_else(|p| p.into_inner()) = Some((name.clone(), now));
        Ok(Some(name))
    }

    async fn check(&self, slice: &str, claim: Claim, now: DateTime<Utc>) -> Result<Checked, DbErr> {
        let leased = Leased::table("nodes");
        let Some(node) = node::Entity::find_by_id(claim.id).one(&self.db).await? else {
            return Ok(Checked::Nothing);
        };
        match node.pool {
            NodePool::New | NodePool::Down => {
                let row = storage::ensure(&self.db, SliverKind::Service, slice, node.id, now).await?;
                storage::start_attempt(&self.db, row.id, now).await?;
                leased.release(&self.db, claim, Some(now + SAFETY_NET)).await?;
                Ok(Checked::Tested)
            }
            NodePool::Free => {
                let row = sliver::Entity::find()
                    .filter(sliver::Column::SliceName.eq(slice))
                    .filter(sliver::Column::NodeId.eq(node.id))
                    .one(&self.db)
                    .await?;
                let healthy = row.as_ref().is_some_and(|r| {
                    r.health == Health::Up
                        && r.last_heartbeat_at.is_some_and(|t| now - t < self.settings.silence)
                });
                if healthy {
                    let txn = crate::db::begin_writing(&self.db).await?;
                    let due = pools::check_passed(&txn, node.id, "service sliver heartbeating", now).await?;
                    txn.commit().await?;
                    leased.release(&self.db, claim, due).await?;
                    Ok(Checked::Rechecked)
                } else {
                    // Free without a live service sliver (e.g. set free before this portal watched it):
                    // test it again.
                    let row = storage::ensure(&self.db, SliverKind::Service, slice, node.id, now).await?;
                    storage::start_attempt(&self.db, row.id, now).await?;
                    leased.release(&self.db, claim, Some(now + SAFETY_NET)).await?;
                    Ok(Checked::Tested)
                }
            }
            NodePool::Gone | NodePool::Held => {
                leased.release(&self.db, claim, None).await?;
                Ok(Checked::Nothing)
            }
        }
    }

    /// Slivers silent for longer than [`Settings::silence`] go down; a service sliver's node with them.
    pub async fn sweep(&self) -> Result<usize, DbErr> {
        let now = self.clock.now();
        let cutoff = now - self.settings.silence;
        let txn = crate::db::begin_writing(&self.db).await?;
        let silent = sliver::Entity::update_many()
            .col_expr(sliver::Column::Health, Expr::value(Health::Down))
            .col_expr(
                sliver::Column::LastError,
                Expr::value(Some(format!("no heartbeat for {} s", self.settings.silence.num_seconds()))),
            )
            .col_expr(sliver::Column::UpdatedAt, Expr::value(now))
            .filter(sliver::Column::Health.eq(Health::Up))
            .filter(sliver::Column::LastHeartbeatAt.lt(cutoff))
            .exec_with_returning(&txn)
            .await?;
        for row in silent.iter().filter(|r| r.kind == SliverKind::Service) {
            let reason = format!("service sliver silent for over {} s", self.settings.silence.num_seconds());
            pools::check_failed(&txn, row.node_id, &reason, now).await?;
        }
        txn.commit().await?;
        Ok(silent.len())
    }
}

enum Checked {
    Tested,
    Rechecked,
    Nothing,
}

/// New nodes not scheduled yet are due now (discovery makes them; the batch size spreads their tests).
async fn schedule_new(db: &impl ConnectionTrait, now: DateTime<Utc>) -> Result<u64, DbErr> {
    let result = node::Entity::update_many()
        .col_expr(node::Column::DueAt, Expr::value(Some(now)))
        .filter(node::Column::Pool.eq(NodePool::New))
        .filter(node::Column::DueAt.is_null())
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

/// Every node's re-test: when it is due (for the operators' queue).
pub async fn queue(db: &impl ConnectionTrait, limit: u64) -> Result<Vec<node::Model>, DbErr> {
    node::Entity::find()
        .filter(node::Column::Pool.is_in([NodePool::New, NodePool::Down, NodePool::Free]))
        .filter(node::Column::DueAt.is_not_null())
        .order_by_asc(node::Column::DueAt)
        .limit(limit)
        .all(db)
        .await
}

/// An operator's "re-test now": the node is due at once, and its service sliver (if it has one and no
/// bring-up is under way) is brought up again from scratch, so that the test is end to end even for a free
/// node. `false` for a node that is not tested (gone, held, or unknown).
pub async fn retest_now(db: &DatabaseConnection, node_id: i64, now: DateTime<Utc>) -> Result<bool, DbErr> {
    let result = node::Entity::update_many()
        .col_expr(node::Column::DueAt, Expr::value(Some(now)))
        .filter(node::Column::Id.eq(node_id))
        .filter(node::Column::Pool.is_in([NodePool::New, NodePool::Down, NodePool::Free]))
        .exec(db)
        .await?;
    if result.rows_affected != 1 {
        return Ok(false);
    }
    let service = sliver::Entity::find()
        .filter(sliver::Column::NodeId.eq(node_id))
        .filter(sliver::Column::Kind.eq(SliverKind::Service))
        .one(db)
        .await?;
    if let Some(row) = service {
        storage::start_attempt(db, row.id, now).await?;
    }
    Ok(true)
}
