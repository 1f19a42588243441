//! Log-in throttling (`portolan_core::throttle`), and an audit target that holds any valid email.
//!
//! `login_throttle`: one row per throttled key, shared by every `serve` process on the database:
//!
//! - `key` (text ≤ 80, primary key): `account:<sha256 of the normalised email>` (whether or not such an
//!   account exists, so throttling does not reveal which do; the email itself is not stored) or
//!   `client:<address>` (an IPv4 address, or an IPv6 /64).
//! - `failures` (integer): failed attempts counted since the last quiet period (an attempt counts as
//!   failed while it runs, so that parallel attempts cannot overtake the count).
//! - `last_failure_s` (big integer): unix seconds of the last counted attempt; rows quiet for longer than
//!   the reset period are deleted.
//! - `locked_until_s` (big integer): unix seconds until which attempts on this key are refused (0: none).
//!
//! Times are unix seconds so that the throttle's single-statement arithmetic is the same SQL on SQLite and
//! PostgreSQL.
//!
//! `audit_log.target` grows from 200 to 254 characters on PostgreSQL (SQLite does not enforce `varchar`
//! lengths), the length of `users.email`: a log-in or registration with a valid 247-character email wrote
//! an audit row PostgreSQL refused. `down` leaves it at 254: narrowing it again would fail on the longer
//! targets stored meanwhile.

use crate::index;
use sea_orm_migration::{prelude::*, schema::*, sea_orm::DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("login_throttle")
                    .col(string_len("key", 80).primary_key())
                    .col(integer("failures"))
                    .col(big_integer("last_failure_s"))
                    .col(big_integer("locked_until_s"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index("login_throttle", "login_throttle_last_failure", &["last_failure_s"], false))
            .await?;
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            manager
                .alter_table(
                    Table::alter().table("audit_log").modify_column(string_len("target", 254)).to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table("login_throttle").to_owned()).await
    }
}
