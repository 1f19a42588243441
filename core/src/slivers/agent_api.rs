//! The agents' side of the portal (`/agent/v1/…`): who is calling (a sliver credential, nothing else),
//! the sliver's manifest, and heartbeats.
//!
//! A credential names its sliver; the portal compares the secret's SHA-256 with the stored hash in constant
//! time. The row of a sliver that is up is cached for [`AUTH_TTL`] (heartbeats of thousands of slivers would otherwise
//! read it thousands of times a second), so a credential replaced by a new bring-up on another `serve`
//! process stops working within that time; on this process at once (bring-up invalidates its entry). A miss
//! reads the sliver and its node in one statement.
//!
//! A manifest is built for each call (a digest of a few hundred bytes) from the accounts of the sliver's
//! kind, which are the same for every sliver of that kind and so cached once per kind for [`MANIFEST_TTL`]:
//! one read of the operators' keys every two seconds, however many slivers heartbeat.
//!
//! A heartbeat that brings news (the first after bring-up, the first after a silence) is written at once,
//! with its consequences (the attempt recorded, the node's pool); every other one goes to the batched
//! writer ([`super::ingest`]).

use super::Settings;
use super::ingest::{Beat, Ingest};
use super::storage::{self, AttemptContext};
use crate::clock::Clock;
use crate::db::entity::{Health, SliverKind, SliverStep, node, sliver, ssh_key, user};
use crate::error::{AppError, AppResult};
use portolan_agent::protocol::{
    Account, Credential, Heartbeat, HeartbeatReply, Manifest, OUTPUT_TAIL_BYTES, StartupState,
};
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, FromQueryResult, JoinType, QueryFilter, QueryOrder,
    QuerySelect,
};
use std::sync::Arc;
use std::time::Duration;

/// How long a sliver's credential check is cached.
pub const AUTH_TTL: Duration = Duration::from_secs(5);
/// How long the accounts of a manifest are cached: changes reach slivers within two heartbeats as long as
/// this is shorter than one.
pub const MANIFEST_TTL: Duration = Duration::from_secs(2);

/// The sliver a credential belongs to, as far as agents' calls need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliverAuth {
    pub id: i64,
    pub kind: SliverKind,
    pub slice: String,
    pub node_id: i64,
    pub hostname: String,
    pub site_id: i32,
    pub step: SliverStep,
    pub health: Health,
    credential_hash: Option<String>,
}

pub struct AgentApi {
    db: DatabaseConnection,
    clock: Clock,
    settings: Arc<Settings>,
    testbed: Option<Arc<dyn crate::testbed::Testbed>>,
    ingest: Ingest,
    auth: moka::sync::Cache<i64, Arc<SliverAuth>>,
    /// The accounts of every sliver of a kind.
    accounts: moka::sync::Cache<SliverKind, Arc<Vec<Account>>>,
}

/// What [`AgentApi::load`] reads: the sliver's row and its node's, joined.
#[derive(FromQueryResult)]
struct AuthRow {
    id: i64,
    kind: SliverKind,
    slice_name: String,
    node_id: i64,
    step: SliverStep,
    health: Health,
    credential_hash: Option<String>,
    hostname: String,
    site_id: i32,
}

impl std::fmt::Debug for AgentApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentApi").field("cached_slivers", &self.auth.entry_count()).finish_non_exhaustive()
    }
}

fn revoked() -> AppError {
    AppError::new(model::error::ErrorCode::Unauthenticated, "present a valid sliver credential")
}

impl AgentApi {
    pub fn new(
        db: DatabaseConnection,
        clock: Clock,
        settings: Arc<Settings>,
        testbed: Option<Arc<dyn crate::testbed::Testbed>>,
        ingest: Ingest,
    ) -> Self {
        Self {
            db,
            clock,
            settings,
            testbed,
            ingest,
            auth: moka::sync::Cache::builder().max_capacity(200_000).time_to_live(AUTH_TTL).build(),
            accounts: moka::sync::Cache::builder().max_capacity(4).time_to_live(MANIFEST_TTL).build(),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn ingest(&self) -> &Ingest {
        &self.ingest
    }

    /// Forgets what is cached about `sliver_id` (its credential changed, or its state).
    pub fn forget(&self, sliver_id: i64) {
        self.auth.invalidate(&sliver_id);
    }

    /// The sliver whose credential `bearer` is; 401 for anything else (unknown, malformed, replaced).
    pub async fn authenticate(&self, bearer: &str) -> AppResult<Arc<SliverAuth>> {
        let credential = Credential::parse(bearer).ok_or_else(revoked)?;
        let auth = match self.auth.get(&credential.sliver_id) {
            Some(auth) => auth,
            None => {
                let auth = Arc::new(self.load(credential.sliver_id).await?.ok_or_else(revoked)?);
                // Only a sliver up and running is cached: one being brought up changes step at any moment
                // (its first heartbeat must see the step bring-up has just written).
                if (auth.step, auth.health) == (SliverStep::Ready, Health::Up) {
                    self.auth.insert(credential.sliver_id, auth.clone());
                }
                auth
            }
        };
        let presented = credential.secret_hash();
        let matches = auth.credential_hash.as_deref().is_some_and(|stored| {
            use subtle::ConstantTimeEq;
            stored.as_bytes().ct_eq(presented.as_bytes()).into()
        });
        if matches { Ok(auth) } else { Err(revoked()) }
    }

    /// The sliver `sliver_id` and its node, in one statement; `None` if either is missing.
    async fn load(&self, sliver_id: i64) -> AppResult<Option<SliverAuth>> {
        use sliver::Column as S;
        let to_node = sliver::Entity::belongs_to(node::Entity).from(S::NodeId).to(node::Column::Id).into();
        let row = sliver::Entity::find_by_id(sliver_id)
            .select_only()
            .columns([S::Id, S::Kind, S::SliceName, S::NodeId, S::Step, S::Health, S::CredentialHash])
            .columns([node::Column::Hostname, node::Column::SiteId])
            .join(JoinType::InnerJoin, to_node)
            .into_model::<AuthRow>()
            .one(&self.db)
            .await?;
        Ok(row.map(|row| SliverAuth {
            id: row.id,
            kind: row.kind,
            slice: row.slice_name,
            node_id: row.node_id,
            hostname: row.hostname,
            site_id: row.site_id,
            step: row.step,
            health: row.health,
            credential_hash: row.credential_hash,
        }))
    }

    /// The manifest of the caller's sliver.
    pub async fn manifest(&self, auth: &SliverAuth) -> AppResult<Arc<Manifest>> {
        let accounts = self.accounts(auth.kind).await?;
        let manifest = build_manifest(&auth.slice, &auth.hostname, accounts.to_vec(), self.heartbeat_s());
        Ok(Arc::new(manifest))
    }

    /// Who may log in to slivers of `kind`.
    async fn accounts(&self, kind: SliverKind) -> AppResult<Arc<Vec<Account>>> {
        if let Some(accounts) = self.accounts.get(&kind) {
            return Ok(accounts);
        }
        let accounts = Arc::new(match kind {
            // Portolan's own slivers: the operators may log in.
            SliverKind::Service => self.operator_accounts().await?,
            // Researchers' slivers are the experiments issue's: nobody until then.
            SliverKind::Experiment => Vec::new(),
        });
        self.accounts.insert(kind, accounts.clone());
        Ok(accounts)
    }

    /// The heartbeat interval agents are told, in real seconds (the portal's clock may run scaled; agents'
    /// clocks do not), at least one.
    fn heartbeat_s(&self) -> u32 {
        let real = self.clock.real_duration(self.settings.heartbeat).as_secs_f64().round();
        if real.is_finite() { (real as u32).max(1) } else { 30 }
    }

    async fn operator_accounts(&self) -> AppResult<Vec<Account>> {
        let operators = user::Entity::find()
            .filter(user::Column::IsOperator.eq(true))
            .order_by_asc(user::Column::Id)
            .all(&self.db)
            .await?;
        let ids: Vec<i32> = operators.iter().map(|u| u.id).collect();
        let keys = ssh_key::Entity::find()
            .filter(ssh_key::Column::UserId.is_in(ids))
            .order_by_asc(ssh_key::Column::Id)
            .all(&self.db)
            .await?;
        Ok(operators
            .into_iter()
            .map(|u| Account {
                name: u.email.clone(),
                keys: keys.iter().filter(|k| k.user_id == u.id).map(|k| k.public_key.clone()).collect(),
            })
            .filter(|a| !a.keys.is_empty())
            .collect())
    }

    /// One heartbeat from the caller's sliver.
    pub async fn heartbeat(&self, auth: &SliverAuth, beat: Heartbeat) -> AppResult<HeartbeatReply> {
        check_heartbeat(auth, &beat)?;
        let now = self.clock.now();
        let manifest = self.manifest(auth).await?;
        let reply =
            HeartbeatReply { manifest_version: manifest.version.clone(), heartbeat_s: manifest.heartbeat_s };
        match (auth.step, auth.health) {
            (SliverStep::Heartbeat, _) => {
                let row = self.row(auth.id).await?;
                let generation = row.generation.clone().unwrap_or_else(|| self.generation());
                let context = AttemptContext { site_id: auth.site_id, generation };
                if storage::came_up(&self.db, &row, &context, now).await? {
                    tracing::info!(sliver = auth.id, node = %auth.hostname, "sliver up end to end");
                }
                self.forget(auth.id);
            }
            (SliverStep::Ready, Health::Down) => {
                let row = self.row(auth.id).await?;
                if storage::resumed(&self.db, &row, now).await? {
                    tracing::info!(sliver = auth.id, node = %auth.hostname, "sliver heartbeats again");
                }
                self.forget(auth.id);
            }
            (SliverStep::Ready, _) => {}
            // Bring-up has not recorded the agent's start yet (the agent was quicker): nothing to store.
            _ => return Ok(reply),
        }
        self.ingest.push(Beat::of(auth, &beat, now));
        Ok(reply)
    }

    /// The testbed's API generation as its client last saw it (what the attempt ran under).
    fn generation(&self) -> String {
        let generation = self.testbed.as_ref().and_then(|t| t.last_generation());
        generation.map_or("unknown", crate::testbed::Generation::as_str).to_owned()
    }

    async fn row(&self, id: i64) -> AppResult<sliver::Model> {
        sliver::Entity::find_by_id(id).one(&self.db).await?.ok_or_else(revoked)
    }
}

/// The manifest for a sliver, its version a digest of everything else.
pub fn build_manifest(slice: &str, node: &str, accounts: Vec<Account>, heartbeat_s: u32) -> Manifest {
    use sha2::{Digest, Sha256};
    let mut manifest = Manifest {
        version: String::new(),
        slice: slice.to_owned(),
        node: node.to_owned(),
        accounts,
        software: Vec::new(),
        startup: None,
        heartbeat_s,
    };
    let digest = Sha256::digest(serde_json::to_vec(&manifest).unwrap_or_default());
    manifest.version = hex::encode(&digest[..16]);
    manifest
}

fn too_long(field: &str, limit: usize) -> AppError {
    AppError::invalid(field, format!("{field} is longer than {limit} bytes"))
}

/// A heartbeat must be for the caller's own sliver and hold plausible values.
fn check_heartbeat(auth: &SliverAuth, beat: &Heartbeat) -> AppResult<()> {
    if beat.slice != auth.slice || beat.node != auth.hostname {
        return Err(AppError::forbidden(format!(
            "this credential is for slice {} on {}; the heartbeat says slice {} on {}",
            auth.slice, auth.hostname, beat.slice, beat.node
        )));
    }
    if beat.agent_version.len() > 64 {
        return Err(too_long("agent_version", 64));
    }
    if beat.manifest_version.as_ref().is_some_and(|v| v.len() > 64) {
        return Err(too_long("manifest_version", 64));
    }
    if beat.manifest_error.as_ref().is_some_and(|e| e.len() > 2 * OUTPUT_TAIL_BYTES) {
        return Err(too_long("manifest_error", 2 * OUTPUT_TAIL_BYTES));
    }
    match &beat.startup {
        StartupState::Exited { output_tail, .. } if output_tail.len() > 2 * OUTPUT_TAIL_BYTES => {
            return Err(too_long("startup.output_tail", 2 * OUTPUT_TAIL_BYTES));
        }
        StartupState::Failed { error } if error.len() > 2 * OUTPUT_TAIL_BYTES => {
            return Err(too_long("startup.error", 2 * OUTPUT_TAIL_BYTES));
        }
        _ => {}
    }
    let m = &beat.metrics;
    let checks = [
        ("metrics.load1", m.load1, 10_000.0),
        ("metrics.memory_total_mb", m.memory_total_mb, 1e9),
        ("metrics.memory_free_mb", m.memory_free_mb, 1e9),
        ("metrics.disk_free_pct", m.disk_free_pct, 100.0),
    ];
    for (field, value, max) in checks {
        if let Some(v) = value
            && !(v.is_finite() && (0.0..=max).contains(&v))
        {
            return Err(AppError::invalid(field, format!("{field} must be a number from 0 to {max}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_version_changes_with_its_accounts() {
        let one = build_manifest("s", "n", vec![], 30);
        let again = build_manifest("s", "n", vec![], 30);
        let other = build_manifest("s", "n", vec![Account { name: "a".into(), keys: vec!["k".into()] }], 30);
        assert_eq!(one.version, again.version);
        assert_ne!(one.version, other.version);
        assert_eq!(one.version.len(), 32);
    }
}
