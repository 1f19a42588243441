//! sea-orm entities, one module per table. Relations are kept out: queries say their joins explicitly.
//!
//! Columns with a fixed set of values (a member's role, a join request's status, a token's scopes) are
//! enums stored as text ([`MemberRole`], [`JoinStatus`], [`TokenScope`]): reading a value outside the set is
//! an error, never a guess, and the database refuses to store one (the integrity migration's checks).

macro_rules! no_relations {
    () => {
        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}
        impl ActiveModelBehavior for ActiveModel {}
    };
}

use sea_orm::entity::prelude::*;

/// `memberships.role`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum MemberRole {
    #[sea_orm(string_value = "leader")]
    Leader,
    #[sea_orm(string_value = "member")]
    Member,
}

impl From<MemberRole> for model::projects::Role {
    fn from(role: MemberRole) -> Self {
        match role {
            MemberRole::Leader => Self::Leader,
            MemberRole::Member => Self::Member,
        }
    }
}

impl From<model::projects::Role> for MemberRole {
    fn from(role: model::projects::Role) -> Self {
        match role {
            model::projects::Role::Leader => Self::Leader,
            model::projects::Role::Member => Self::Member,
        }
    }
}

/// `join_requests.status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum JoinStatus {
    #[sea_orm(string_value = "pending")]
    Pending,
    #[sea_orm(string_value = "approved")]
    Approved,
    #[sea_orm(string_value = "rejected")]
    Rejected,
}

impl From<JoinStatus> for model::projects::RequestStatus {
    fn from(status: JoinStatus) -> Self {
        match status {
            JoinStatus::Pending => Self::Pending,
            JoinStatus::Approved => Self::Approved,
            JoinStatus::Rejected => Self::Rejected,
        }
    }
}

/// `api_tokens.scopes`: the comma-separated scopes a token carries (today `read` or `read,write`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(64))")]
pub enum TokenScope {
    #[sea_orm(string_value = "read")]
    Read,
    #[sea_orm(string_value = "read,write")]
    ReadWrite,
}

impl From<TokenScope> for model::tokens::Scope {
    fn from(scope: TokenScope) -> Self {
        match scope {
            TokenScope::Read => Self::Read,
            TokenScope::ReadWrite => Self::Write,
        }
    }
}

impl From<model::tokens::Scope> for TokenScope {
    fn from(scope: model::tokens::Scope) -> Self {
        match scope {
            model::tokens::Scope::Read => Self::Read,
            model::tokens::Scope::Write => Self::ReadWrite,
        }
    }
}

pub mod user {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        #[sea_orm(unique)]
        pub email: String,
        pub name: String,
        pub password_hash: String,
        pub is_operator: bool,
        pub created_at: DateTimeUtc,
    }
    no_relations!();
}

pub mod project {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "projects")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        #[sea_orm(unique)]
        pub name: String,
        pub description: String,
        pub created_by: i32,
        pub created_at: DateTimeUtc,
    }
    no_relations!();
}

pub mod membership {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "memberships")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub project_id: i32,
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: i32,
        pub role: super::MemberRole,
        pub created_at: DateTimeUtc,
    }
    no_relations!();
}

pub mod join_request {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "join_requests")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub project_id: i32,
        pub user_id: i32,
        pub message: String,
        pub status: super::JoinStatus,
        pub created_at: DateTimeUtc,
        pub decided_by: Option<i32>,
        pub decided_at: Option<DateTimeUtc>,
    }
    no_relations!();
}

pub mod ssh_key {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "ssh_keys")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub user_id: i32,
        pub algorithm: String,
        /// The whole key in OpenSSH form, `algorithm base64 comment`, as it goes into authorized_keys.
        #[sea_orm(column_type = "Text")]
        pub public_key: String,
        pub comment: String,
        pub fingerprint: String,
        pub created_at: DateTimeUtc,
    }
    no_relations!();
}

pub mod api_token {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "api_tokens")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub user_id: i32,
        pub name: String,
        pub scopes: super::TokenScope,
        /// Hex SHA-256 of the token; the token itself is never stored.
        #[sea_orm(unique)]
        pub token_hash: String,
        pub created_at: DateTimeUtc,
        pub last_used_at: Option<DateTimeUtc>,
        pub revoked_at: Option<DateTimeUtc>,
    }
    no_relations!();
}

pub mod session {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sessions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub data: Vec<u8>,
        /// Unix seconds.
        pub expiry_date: i64,
    }
    no_relations!();
}

pub mod audit {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_log")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub at: DateTimeUtc,
        pub actor_id: Option<i32>,
        pub action: String,
        pub target: String,
        #[sea_orm(column_type = "Text")]
        pub detail: String,
    }
    no_relations!();
}

/// `nodes.pool`: where a node stands in the portal's eyes (see README, "Nodes and discovery").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, serde::Serialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "snake_case")]
pub enum NodePool {
    /// Discovered, no end-to-end test passed yet.
    #[sea_orm(string_value = "new")]
    New,
    /// Passed an end-to-end test: allocatable.
    #[sea_orm(string_value = "free")]
    Free,
    /// Listed but not answering (not booted), or failed set-up: re-tested later.
    #[sea_orm(string_value = "down")]
    Down,
    /// The testbed no longer lists it (or it was replaced after a role change).
    #[sea_orm(string_value = "gone")]
    Gone,
    /// Its identity is ambiguous: out of allocation until an operator decides.
    #[sea_orm(string_value = "held")]
    Held,
}

impl NodePool {
    pub const ALL: [NodePool; 5] =
        [NodePool::New, NodePool::Free, NodePool::Down, NodePool::Gone, NodePool::Held];

    pub fn as_str(self) -> &'static str {
        match self {
            NodePool::New => "new",
            NodePool::Free => "free",
            NodePool::Down => "down",
            NodePool::Gone => "gone",
            NodePool::Held => "held",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == text)
    }
}

pub mod site {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "sites")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub testbed_id: i32,
        #[sea_orm(unique)]
        pub login_base: String,
        pub name: String,
        pub enabled: bool,
        pub max_slices: Option<i32>,
        pub latitude: Option<f64>,
        pub longitude: Option<f64>,
        pub present: bool,
        pub first_seen: DateTimeUtc,
        pub last_seen: DateTimeUtc,
        pub gone_at: Option<DateTimeUtc>,
    }
    no_relations!();
}

pub mod node {
    use super::NodePool;
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "nodes")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub testbed_id: Option<i32>,
        pub hostname: String,
        pub ip: Option<String>,
        #[sea_orm(column_type = "Text", nullable)]
        pub host_key: Option<String>,
        pub site_id: i32,
        pub link_class: String,
        pub country: Option<String>,
        pub boot_state: String,
        pub last_contact: Option<DateTimeUtc>,
        #[sea_orm(column_type = "Text")]
        pub tags: String,
        pub cpu_cores: Option<i32>,
        pub memory_mb: Option<i32>,
        pub disk_gb: Option<i32>,
        pub pool: NodePool,
        pub load: Option<f64>,
        pub memory_free_mb: Option<f64>,
        pub disk_free_pct: Option<f64>,
        pub metrics_at: Option<DateTimeUtc>,
        pub reliability: f64,
        pub recent_failures: i32,
        pub first_seen: DateTimeUtc,
        pub last_seen: DateTimeUtc,
        pub gone_at: Option<DateTimeUtc>,
        pub due_at: Option<DateTimeUtc>,
        pub lease_owner: Option<String>,
        pub lease_until: Option<DateTimeUtc>,
        pub updated_at: DateTimeUtc,
        pub check_failures: i32,
        pub check_successes: i32,
        pub last_check_at: Option<DateTimeUtc>,
    }
    no_relations!();
}

pub mod node_event {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "node_events")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub node_id: i64,
        pub at: DateTimeUtc,
        pub kind: String,
        pub score: Option<i32>,
        #[sea_orm(column_type = "Text")]
        pub old: String,
        #[sea_orm(column_type = "Text")]
        pub new: String,
        #[sea_orm(column_type = "Text")]
        pub detail: String,
    }
    no_relations!();
}

pub mod identity_decision {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "identity_decisions")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub node_id: i64,
        #[sea_orm(column_type = "Text")]
        pub candidates: String,
        #[sea_orm(column_type = "Text")]
        pub reason: String,
        pub created_at: DateTimeUtc,
        pub decided_at: Option<DateTimeUtc>,
        pub decision: Option<String>,
        pub decided_by: Option<i32>,
    }
    no_relations!();
}

pub mod discovery_run {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "discovery_runs")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub kind: String,
        pub started_at: DateTimeUtc,
        pub duration_ms: i64,
        pub ok: bool,
        #[sea_orm(column_type = "Text")]
        pub counts: String,
        #[sea_orm(column_type = "Text", nullable)]
        pub error: Option<String>,
    }
    no_relations!();
}

pub mod admission_threshold {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "admission_thresholds")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i32,
        pub max_load: Option<f64>,
        pub min_disk_free_pct: Option<f64>,
        pub min_memory_free_mb: Option<f64>,
        pub max_metric_age_s: Option<f64>,
        pub max_path_age_s: Option<f64>,
        pub exclude_after_failures: i32,
        pub allow_untested: bool,
        pub updated_at: Option<DateTimeUtc>,
        pub updated_by: Option<i32>,
    }
    no_relations!();
}

/// Whose a sliver is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, serde::Serialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "snake_case")]
pub enum SliverKind {
    /// Portolan's own, on every node: proves the node live and reports its load.
    #[sea_orm(string_value = "service")]
    Service,
    /// A researcher's experiment's.
    #[sea_orm(string_value = "experiment")]
    Experiment,
}

/// Where a sliver's bring-up stands (see `crate::provision`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, serde::Serialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "snake_case")]
pub enum SliverStep {
    /// The slice is to be bound to the node (or the node manager asked to create the sliver).
    #[sea_orm(string_value = "bind")]
    Bind,
    /// Waiting for the testbed to instantiate the sliver (polled with backoff).
    #[sea_orm(string_value = "wait")]
    Wait,
    #[sea_orm(string_value = "connect")]
    Connect,
    #[sea_orm(string_value = "install")]
    Install,
    #[sea_orm(string_value = "configure")]
    Configure,
    #[sea_orm(string_value = "start")]
    Start,
    /// The agent runs; waiting for its first heartbeat.
    #[sea_orm(string_value = "heartbeat")]
    Heartbeat,
    /// Brought up end to end.
    #[sea_orm(string_value = "ready")]
    Ready,
}

impl SliverStep {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bind => "bind",
            Self::Wait => "wait",
            Self::Connect => "connect",
            Self::Install => "install",
            Self::Configure => "configure",
            Self::Start => "start",
            Self::Heartbeat => "heartbeat",
            Self::Ready => "ready",
        }
    }
}

/// A sliver's health, from its heartbeats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, serde::Serialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Being brought up; no heartbeat yet.
    #[sea_orm(string_value = "booting")]
    Booting,
    /// Heartbeating.
    #[sea_orm(string_value = "up")]
    Up,
    /// Silent for longer than allowed, or its bring-up failed.
    #[sea_orm(string_value = "down")]
    Down,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Booting => "booting",
            Self::Up => "up",
            Self::Down => "down",
        }
    }
}

pub mod sliver {
    use super::{Health, SliverKind, SliverStep};
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "slivers")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub kind: SliverKind,
        pub slice_name: String,
        pub node_id: i64,
        pub step: SliverStep,
        pub health: Health,
        pub credential_hash: Option<String>,
        pub generation: Option<String>,
        pub attempt_started_at: Option<DateTimeUtc>,
        pub step_started_at: Option<DateTimeUtc>,
        pub polls: i32,
        pub up_at: Option<DateTimeUtc>,
        pub last_heartbeat_at: Option<DateTimeUtc>,
        pub heartbeats: i64,
        pub manifest_version: Option<String>,
        #[sea_orm(column_type = "Text", nullable)]
        pub manifest_error: Option<String>,
        #[sea_orm(column_type = "Text")]
        pub startup: String,
        #[sea_orm(column_type = "Text", nullable)]
        pub last_error: Option<String>,
        pub error_step: Option<String>,
        pub error_class: Option<String>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        pub due_at: Option<DateTimeUtc>,
        pub lease_owner: Option<String>,
        pub lease_until: Option<DateTimeUtc>,
    }
    no_relations!();
}

pub mod sliver_attempt {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "sliver_attempts")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub sliver_id: i64,
        pub node_id: i64,
        pub site_id: i32,
        pub kind: String,
        pub generation: String,
        pub started_at: DateTimeUtc,
        pub finished_at: DateTimeUtc,
        pub seconds: f64,
        pub failed_step: Option<String>,
        pub class: Option<String>,
        #[sea_orm(column_type = "Text", nullable)]
        pub error: Option<String>,
    }
    no_relations!();
}

pub mod node_metric {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "node_metrics")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub node_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub width_s: i32,
        #[sea_orm(primary_key, auto_increment = false)]
        pub at: DateTimeUtc,
        pub samples: i32,
        pub load: Option<f64>,
        pub memory_total_mb: Option<f64>,
        pub memory_free_mb: Option<f64>,
        pub disk_free_pct: Option<f64>,
        pub net_rx_bps: Option<f64>,
        pub net_tx_bps: Option<f64>,
    }
    no_relations!();
}

pub mod pool_event {
    use super::NodePool;
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "pool_events")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub node_id: i64,
        pub at: DateTimeUtc,
        pub from_pool: NodePool,
        pub to_pool: NodePool,
        #[sea_orm(column_type = "Text")]
        pub reason: String,
    }
    no_relations!();
}

pub mod portal_identity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "portal_identity")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i32,
        #[sea_orm(column_type = "Text")]
        pub ssh_private_key: String,
        #[sea_orm(column_type = "Text")]
        pub ssh_public_key: String,
        pub created_at: DateTimeUtc,
    }
    no_relations!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::Iterable;

    #[test]
    fn stored_values_round_trip_and_unknown_ones_are_errors() {
        for role in MemberRole::iter() {
            assert_eq!(MemberRole::try_from_value(&role.to_value()).unwrap(), role);
        }
        for status in JoinStatus::iter() {
            assert_eq!(JoinStatus::try_from_value(&status.to_value()).unwrap(), status);
        }
        for scope in TokenScope::iter() {
            assert_eq!(TokenScope::try_from_value(&scope.to_value()).unwrap(), scope);
            let model: model::tokens::Scope = scope.into();
            assert_eq!(model.as_str(), scope.to_value(), "the API's spelling is the stored one");
        }
        for (role, status, scope) in
            [("owner", "withdrawn", "admin"), ("", "", ""), ("Leader", "Pending", "write")]
        {
            assert!(MemberRole::try_from_value(&role.to_owned()).is_err(), "{role}");
            assert!(JoinStatus::try_from_value(&status.to_owned()).is_err(), "{status}");
            assert!(TokenScope::try_from_value(&scope.to_owned()).is_err(), "{scope}");
        }
    }
}
