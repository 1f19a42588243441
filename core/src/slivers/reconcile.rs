//! The slivers' reconcile loop: claims due slivers, takes each one step further (see the module above for
//! the steps), records it, releases it with its next due time. A crash anywhere loses nothing: the lease
//! runs out, the row is claimed again and the step (idempotent) is repeated.

use super::Settings;
use super::bringup::{self, StepFailure};
use super::storage::{self, AttemptContext};
use crate::clock::Clock;
use crate::db::claim::{Claim, Owner};
use crate::db::entity::{NodePool, SliverStep, node, sliver};
use crate::ssh::{Identity, Target};
use crate::testbed::{Class, Generation, NodeOp, Testbed};
use chrono::{DateTime, TimeDelta, Utc};
use portolan_agent::bringup::AgentConfig;
use portolan_agent::protocol::Credential;
use sea_orm::{DatabaseConnection, DbErr, EntityTrait};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Retryable failures of one step tried again within an attempt before the attempt fails.
const RETRIES: i32 = 3;
/// Steps in flight per SSH bring-up slot: most steps wait on the testbed (a node manager's `Create` takes
/// minutes and costs the portal one idle request), so they may outnumber the SSH sessions, which
/// [`Settings::concurrency`] bounds.
const STEPS_PER_SSH: usize = 4;

/// The loop's shared parts.
#[derive(Clone, Debug)]
pub struct Reconciler {
    pub db: DatabaseConnection,
    pub clock: Clock,
    pub testbed: Arc<dyn Testbed>,
    pub identity: Identity,
    pub settings: Arc<Settings>,
    owner: Owner,
    /// Steps in flight (each holds a slot until it ends, panics included).
    running: Arc<AtomicUsize>,
    /// SSH bring-ups at once.
    ssh: Arc<tokio::sync::Semaphore>,
}

/// One of the reconciler's slots, given back when dropped.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(count: Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    pub claimed: usize,
}

impl Reconciler {
    pub fn new(
        db: DatabaseConnection,
        clock: Clock,
        testbed: Arc<dyn Testbed>,
        identity: Identity,
        settings: Arc<Settings>,
    ) -> Self {
        let ssh = Arc::new(tokio::sync::Semaphore::new(settings.concurrency.max(1)));
        Self {
            db,
            clock,
            testbed,
            identity,
            settings,
            owner: Owner::new("slivers"),
            running: Arc::default(),
            ssh,
        }
    }

    /// How long a claim lasts: the longest one step may take, with room to spare.
    /// Steps are bounded in real time (SSH and testbed timeouts), leases in portal time (which may run
    /// scaled), and an SSH step may first wait for its permit behind the others of its slot.
    fn lease(&self) -> TimeDelta {
        let s = &self.settings;
        let longest = s.connect_timeout + s.install_timeout + s.command_timeout * 3 + Duration::from_secs(60);
        self.clock.portal_span(longest * u32::try_from(STEPS_PER_SSH).unwrap_or(4))
    }

    /// Claims as many due slivers as there are free slots and starts a step of each in the background: a
    /// slow step (a node manager's `Create` takes minutes) holds its slot only, never the others'. At most
    /// [`Settings::concurrency`] of them are SSH bring-ups at once. Answers how many it claimed.
    pub async fn pass(&self) -> Result<Pass, DbErr> {
        let now = self.clock.now();
        let running = self.running.load(Ordering::Acquire);
        let free = (self.settings.concurrency.max(1) * STEPS_PER_SSH).saturating_sub(running);
        if free == 0 {
            return Ok(Pass { claimed: 0 });
        }
        let limit = u32::try_from(free).unwrap_or(u32::MAX);
        let claims = storage::leased().claim(&self.db, &self.owner, now, self.lease(), limit).await?;
        let claimed = claims.len();
        for claim in claims {
            let this = self.clone();
            let slot = Slot::take(self.running.clone());
            tokio::spawn(async move {
                let _slot = slot;
                let id = claim.id;
                if let Err(e) = this.step(claim).await {
                    // The claim runs out and the step is repeated: every step is idempotent.
                    tracing::warn!(sliver = id, error = %e, "a sliver's step failed to record");
                }
            });
        }
        Ok(Pass { claimed })
    }

    /// Steps running now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    async fn step(&self, claim: Claim) -> Result<(), DbErr> {
        let Some(row) = sliver::Entity::find_by_id(claim.id).one(&self.db).await? else { return Ok(()) };
        let node = storage::node_of(&self.db, row.node_id).await?;
        let Some(node) = node.filter(|n| !matches!(n.pool, NodePool::Gone | NodePool::Held)) else {
            // The node left (or waits for an operator): nothing to bring up; idle until asked again.
            storage::advance(&self.db, &claim, SliverStep::Bind, None, self.clock.now()).await?;
            return Ok(());
        };
        let context = AttemptContext {
            site_id: node.site_id,
            generation: self.testbed.last_generation().map_or("unknown", Generation::as_str).to_owned(),
        };
        let step = Step { r: self, claim: &claim, row: &row, node: &node, context: &context };
        match row.step {
            SliverStep::Bind => step.bind().await,
            SliverStep::Wait => step.wait().await,
            SliverStep::Connect | SliverStep::Install | SliverStep::Configure | SliverStep::Start => {
                step.bring_up().await
            }
            SliverStep::Heartbeat => step.heartbeat_overdue().await,
            SliverStep::Ready => {
                storage::advance(&self.db, &claim, SliverStep::Ready, None, self.clock.now())
                    .await
                    .map(|_| ())
            }
        }
    }
}

/// One claimed sliver's step.
struct Step<'a> {
    r: &'a Reconciler,
    claim: &'a Claim,
    row: &'a sliver::Model,
    node: &'a node::Model,
    context: &'a AttemptContext,
}

impl Step<'_> {
    fn now(&self) -> DateTime<Utc> {
        self.r.clock.now()
    }

    async fn fail(&self, failure: StepFailure) -> Result<(), DbErr> {
        tracing::info!(
            sliver = self.row.id,
            node = %self.node.hostname,
            step = failure.step.as_str(),
            class = failure.class.as_str(),
            error = %failure.message,
            "sliver bring-up failed"
        );
        let now = self.now();
        let (step, class, message) = (failure.step, failure.class, failure.message.as_str());
        storage::fail(&self.r.db, self.claim, self.row, self.context, step, class, message, now).await?;
        Ok(())
    }

    /// A retryable failure is tried again (after a short, growing wait) up to [`RETRIES`] times.
    async fn retry_or_fail(&self, failure: StepFailure) -> Result<(), DbErr> {
        if failure.class == Class::Retryable && self.row.polls < RETRIES {
            let due = self.now() + self.r.settings.poll_delay(self.row.polls);
            storage::polled(&self.r.db, self.claim, self.row.polls + 1, due, self.now()).await?;
            return Ok(());
        }
        self.fail(failure).await
    }

    async fn bind(&self) -> Result<(), DbErr> {
        let (slice, host) = (&self.row.slice_name, &self.node.hostname);
        if let Err(e) = self.r.testbed.bind(slice, std::slice::from_ref(host)).await {
            return self.retry_or_fail(StepFailure::new(SliverStep::Bind, e.class, e.to_string())).await;
        }
        if self.r.testbed.last_generation() == Some(Generation::NodeManager)
            && let Err(e) = self.r.testbed.node_manager(host, NodeOp::Create, slice).await
        {
            return self.retry_or_fail(StepFailure::new(SliverStep::Bind, e.class, e.to_string())).await;
        }
        storage::set_generation(&self.r.db, self.claim, &self.context.generation).await?;
        storage::advance(&self.r.db, self.claim, SliverStep::Wait, Some(self.now()), self.now()).await?;
        Ok(())
    }

    async fn wait(&self) -> Result<(), DbErr> {
        let now = self.now();
        match self.r.testbed.slivers(&self.node.hostname).await {
            Ok(slivers) if slivers.iter().any(|s| s.slice == self.row.slice_name) => {
                storage::advance(&self.r.db, self.claim, SliverStep::Connect, Some(now), now).await?;
                return Ok(());
            }
            Ok(_) => {}
            Err(e) if e.class == Class::Fatal => {
                return self.fail(StepFailure::new(SliverStep::Wait, e.class, e.to_string())).await;
            }
            Err(e) => {
                tracing::debug!(node = %self.node.hostname, error = %e, "GetSlivers failed; polling on")
            }
        }
        let since = self.row.step_started_at.unwrap_or(now);
        let guarantee = self.r.settings.instantiation_guarantee;
        if now - since >= guarantee {
            let message = format!(
                "the testbed did not instantiate the sliver within its guarantee ({} min)",
                guarantee.num_minutes()
            );
            return self.fail(StepFailure::new(SliverStep::Wait, Class::Retryable, message)).await;
        }
        let due = (now + self.r.settings.poll_delay(self.row.polls)).min(since + guarantee);
        storage::polled(&self.r.db, self.claim, self.row.polls + 1, due, now).await?;
        Ok(())
    }

    async fn bring_up(&self) -> Result<(), DbErr> {
        let Some(target) = target_of(self.node, &self.row.slice_name) else {
            let message = "the testbed published no SSH host key for the node: refusing to connect unpinned";
            return self.fail(StepFailure::new(SliverStep::Connect, Class::Continuable, message)).await;
        };
        // The claim's lease covers the wait for a permit as well as the bring-up.
        let Ok(_permit) = self.r.ssh.acquire().await else { return Ok(()) };
        let credential = Credential::generate(self.row.id);
        if !storage::set_credential(&self.r.db, self.claim, &credential.secret_hash()).await? {
            return Ok(()); // lost the claim
        }
        let config = AgentConfig {
            portal: self.r.settings.agent_url.clone(),
            credential: credential.expose(),
            slice: self.row.slice_name.clone(),
            node: self.node.hostname.clone(),
        };
        match bringup::run(&self.r.identity, &self.r.settings, &target, &config).await {
            Ok(_) => {
                let due = self.now() + self.r.settings.first_heartbeat;
                storage::advance(&self.r.db, self.claim, SliverStep::Heartbeat, Some(due), self.now())
                    .await?;
                Ok(())
            }
            Err(failure) => self.retry_or_fail(failure).await,
        }
    }

    async fn heartbeat_overdue(&self) -> Result<(), DbErr> {
        let now = self.now();
        let deadline = self.row.step_started_at.unwrap_or(now) + self.r.settings.first_heartbeat;
        if now < deadline {
            storage::polled(&self.r.db, self.claim, self.row.polls, deadline, now).await?;
            return Ok(());
        }
        let message = format!(
            "the agent started but sent no heartbeat within {} s",
            self.r.settings.first_heartbeat.num_seconds()
        );
        self.fail(StepFailure::new(SliverStep::Heartbeat, Class::Retryable, message)).await
    }
}

/// Where to reach the sliver of `slice` on `node`: the node's published `ssh_endpoint` tag (the reference
/// testbed's loopback endpoints) or `hostname:22`, logging in as the `ssh_login` tag or the slice; the host
/// key as the testbed published it. `None` without a published host key.
pub fn target_of(node: &node::Model, slice: &str) -> Option<Target> {
    let host_key = node.host_key.clone().filter(|k| !k.trim().is_empty())?;
    let tags: std::collections::BTreeMap<String, String> =
        serde_json::from_str(&node.tags).unwrap_or_default();
    let addr = tags.get("ssh_endpoint").cloned().unwrap_or_else(|| format!("{}:22", node.hostname));
    let login = tags.get("ssh_login").cloned().unwrap_or_else(|| slice.to_owned());
    Some(Target { addr, login, host_key })
}
