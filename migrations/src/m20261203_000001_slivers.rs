//! Slivers: the portal's own service slivers (and, from the experiments issue on, researchers'), their
//! bring-up attempts, the heartbeats' metrics, the pools' history, and the portal's SSH identity.
//!
//! - `slivers`: one row per (slice, node) the portal wants a sliver on (unique). `kind` ∈ {`service`,
//!   `experiment`}. Bring-up is a reconcile state machine: `step` ∈ {`bind`, `wait`, `connect`, `install`,
//!   `configure`, `start`, `heartbeat`, `ready`} is where it stands, with the standard reconcile columns
//!   (`due_at`, `lease_owner`, `lease_until`) for the loop that advances it. `health` ∈ {`booting`, `up`,
//!   `down`} follows heartbeats. `credential_hash` is the SHA-256 of the sliver's secret (the secret itself is
//!   written only into the sliver); `generation` the testbed API generation its attempt was bound under. `last_error`, `error_step`, `error_class` say why the last attempt failed.
//!   `startup` is the startup command's state (JSON, as the agent reported it). Deleted with the node
//!   (cascade: a node is deleted only when an operator merges a held duplicate).
//! - `sliver_attempts`: one row per bring-up attempt, for the provisioning statistics: when, how long, which
//!   step it failed in (null: it succeeded) and how (class and message), and the node's site and the API
//!   generation at the time. Kept (bounded by pruning to the latest 100,000).
//! - `node_metrics`: the heartbeats' metrics per node as a time series at three resolutions: `width_s` 60
//!   (kept a day), 900 (kept a week) and 3600 (kept 90 days), each row one bucket starting at `at` (mean over
//!   the bucket). Bounded: at most 1,440 + 672 + 2,160 rows per node.
//! - `pool_events`: every pool change of a node (from, to, why): the nodes' lifetime statistics are computed
//!   from them.
//! - `portal_identity`: one row (`id` = 1): the SSH key pair the portal logs into its slivers with (OpenSSH
//!   private key), made at first start, shared by every `serve` process of one database.
//! - `nodes` gains `check_failures` (consecutive failed checks), `check_successes` (consecutive good ones) and
//!   `last_check_at`: the pools' backoff schedule.

use crate::index;
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

const KINDS: [&str; 2] = ["service", "experiment"];
const STEPS: [&str; 8] = ["bind", "wait", "connect", "install", "configure", "start", "heartbeat", "ready"];
const HEALTH: [&str; 3] = ["booting", "up", "down"];
const POOLS: [&str; 5] = ["new", "free", "down", "gone", "held"];

fn one_of(column: &'static str, values: &[&str]) -> SimpleExpr {
    Expr::col(Alias::new(column)).is_in(values.iter().map(|v| (*v).to_owned()))
}

fn cascade_to_node(table: &'static str) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(format!("{table}_node"))
        .from(table, "node_id")
        .to("nodes", "id")
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("slivers")
                    .col(big_pk_auto("id"))
                    .col(string_len("kind", 16).check(one_of("kind", &KINDS)))
                    .col(string_len("slice_name", 64))
                    .col(big_integer("node_id"))
                    .col(string_len("step", 16).check(one_of("step", &STEPS)))
                    .col(string_len("health", 16).check(one_of("health", &HEALTH)))
                    .col(string_len_null("credential_hash", 64))
                    .col(string_len_null("generation", 32))
                    .col(timestamp_with_time_zone_null("attempt_started_at"))
                    .col(timestamp_with_time_zone_null("step_started_at"))
                    .col(integer("polls").default(0))
                    .col(timestamp_with_time_zone_null("up_at"))
                    .col(timestamp_with_time_zone_null("last_heartbeat_at"))
                    .col(big_integer("heartbeats").default(0))
                    .col(string_len_null("manifest_version", 64))
                    .col(text_null("manifest_error"))
                    .col(text("startup"))
                    .col(text_null("last_error"))
                    .col(string_len_null("error_step", 16))
                    .col(string_len_null("error_class", 16))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .col(timestamp_with_time_zone_null("due_at"))
                    .col(string_len_null("lease_owner", 200))
                    .col(timestamp_with_time_zone_null("lease_until"))
                    .foreign_key(&mut cascade_to_node("slivers"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index("slivers", "slivers_slice_node", &["slice_name", "node_id"], true))
            .await?;
        manager.create_index(index("slivers", "slivers_node", &["node_id"], false)).await?;
        manager.create_index(index("slivers", "slivers_due", &["due_at"], false)).await?;
        manager
            .create_index(index("slivers", "slivers_heartbeat", &["health", "last_heartbeat_at"], false))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("sliver_attempts")
                    .col(big_pk_auto("id"))
                    .col(big_integer("sliver_id"))
                    .col(big_integer("node_id"))
                    .col(integer("site_id"))
                    .col(string_len("kind", 16))
                    .col(string_len("generation", 32))
                    .col(timestamp_with_time_zone("started_at"))
                    .col(timestamp_with_time_zone("finished_at"))
                    .col(double("seconds"))
                    .col(string_len_null("failed_step", 16))
                    .col(string_len_null("class", 16))
                    .col(text_null("error"))
                    .to_owned(),
            )
            .await?;
        manager.create_index(index("sliver_attempts", "sliver_attempts_at", &["finished_at"], false)).await?;
        manager.create_index(index("sliver_attempts", "sliver_attempts_node", &["node_id"], false)).await?;

        manager
            .create_table(
                Table::create()
                    .table("node_metrics")
                    .col(big_integer("node_id"))
                    .col(integer("width_s"))
                    .col(timestamp_with_time_zone("at"))
                    .col(integer("samples"))
                    .col(double_null("load"))
                    .col(double_null("memory_total_mb"))
                    .col(double_null("memory_free_mb"))
                    .col(double_null("disk_free_pct"))
                    .col(double_null("net_rx_bps"))
                    .col(double_null("net_tx_bps"))
                    .primary_key(Index::create().col("node_id").col("width_s").col("at"))
                    .foreign_key(&mut cascade_to_node("node_metrics"))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("pool_events")
                    .col(big_pk_auto("id"))
                    .col(big_integer("node_id"))
                    .col(timestamp_with_time_zone("at"))
                    .col(string_len("from_pool", 16).check(one_of("from_pool", &POOLS)))
                    .col(string_len("to_pool", 16).check(one_of("to_pool", &POOLS)))
                    .col(text("reason"))
                    .foreign_key(&mut cascade_to_node("pool_events"))
                    .to_owned(),
            )
            .await?;
        manager.create_index(index("pool_events", "pool_events_node", &["node_id", "at"], false)).await?;
        manager.create_index(index("pool_events", "pool_events_at", &["at"], false)).await?;

        manager
            .create_table(
                Table::create()
                    .table("portal_identity")
                    .col(integer("id").primary_key())
                    .col(text("ssh_private_key"))
                    .col(text("ssh_public_key"))
                    .col(timestamp_with_time_zone("created_at"))
                    .to_owned(),
            )
            .await?;

        for column in [
            ColumnDef::new("check_failures").integer().not_null().default(0).to_owned(),
            ColumnDef::new("check_successes").integer().not_null().default(0).to_owned(),
            ColumnDef::new("last_check_at").timestamp_with_time_zone().null().to_owned(),
        ] {
            // One column per statement: SQLite's ALTER TABLE adds one at a time.
            manager.alter_table(Table::alter().table("nodes").add_column(column).to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in ["check_failures", "check_successes", "last_check_at"] {
            manager.alter_table(Table::alter().table("nodes").drop_column(column).to_owned()).await?;
        }
        for table in ["portal_identity", "pool_events", "node_metrics", "sliver_attempts", "slivers"] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
