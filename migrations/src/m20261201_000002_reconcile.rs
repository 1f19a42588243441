//! Reconcilers: the `reconcile_tasks` table, claimed and leased through `portolan_core::db::claim`.
//!
//! Every table a reconciler claims rows of carries the same three columns (this one, and the later nodes,
//! slivers and experiments tables):
//!
//! - `due_at` (timestamp, null): when the row next needs a reconciler's pass; null means "nothing to do".
//! - `lease_owner` (text, null): who holds the row now (a claimer's unique name); null when nobody does.
//! - `lease_until` (timestamp, null): when that lease runs out; after it, another claimer may take the row.
//!
//! with an index on `due_at` for the claim query.
//!
//! `reconcile_tasks` holds work that belongs to no row of its own: singleton loops such as discovery (one row
//! per `kind`, `key` empty) or one-off jobs keyed by what they are about. Its other columns:
//!
//! - `kind` (text ≤ 64): what the task is (`discovery`, …); `key` (text ≤ 200): which one (empty for
//!   singletons). The pair is unique, so registering a task twice finds the first.
//! - `attempts` (integer, 0): consecutive failed passes (reset by a successful one), for backoff and alerts.
//! - `last_error` (text, null): the last failure, for operators.
//! - `updated_at` (timestamp): when the row was last written.

use crate::index;
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("reconcile_tasks")
                    .col(big_pk_auto("id"))
                    .col(string_len("kind", 64))
                    .col(string_len("key", 200))
                    .col(timestamp_with_time_zone_null("due_at"))
                    .col(string_len_null("lease_owner", 200))
                    .col(timestamp_with_time_zone_null("lease_until"))
                    .col(integer("attempts").default(0))
                    .col(text_null("last_error"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index("reconcile_tasks", "reconcile_tasks_kind_key", &["kind", "key"], true))
            .await?;
        manager.create_index(index("reconcile_tasks", "reconcile_tasks_due", &["due_at"], false)).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table("reconcile_tasks").to_owned()).await
    }
}
