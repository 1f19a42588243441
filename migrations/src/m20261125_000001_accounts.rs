//! Accounts and projects: users, projects, memberships, join requests, SSH keys, API tokens, sessions and
//! the audit log.

use crate::index;
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

fn fk(from_table: &'static str, from_col: &'static str, to_table: &'static str) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(from_table, from_col)
        .to(to_table, "id")
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("users")
                    .col(pk_auto("id"))
                    .col(string_len_uniq("email", 254))
                    .col(string_len("name", 100))
                    .col(string_len("password_hash", 200))
                    .col(boolean("is_operator").default(false))
                    .col(timestamp_with_time_zone("created_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("projects")
                    .col(pk_auto("id"))
                    .col(string_len_uniq("name", 32))
                    .col(string_len("description", 1000))
                    .col(integer("created_by"))
                    .col(timestamp_with_time_zone("created_at"))
                    .foreign_key(&mut fk("projects", "created_by", "users"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("memberships")
                    .col(integer("project_id"))
                    .col(integer("user_id"))
                    .col(string_len("role", 16))
                    .col(timestamp_with_time_zone("created_at"))
                    .primary_key(Index::create().col("project_id").col("user_id"))
                    .foreign_key(&mut fk("memberships", "project_id", "projects"))
                    .foreign_key(&mut fk("memberships", "user_id", "users"))
                    .to_owned(),
            )
            .await?;
        manager.create_index(index("memberships", "memberships_user", &["user_id"], false)).await?;
        manager
            .create_table(
                Table::create()
                    .table("join_requests")
                    .col(pk_auto("id"))
                    .col(integer("project_id"))
                    .col(integer("user_id"))
                    .col(string_len("message", 1000))
                    .col(string_len("status", 16))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(integer_null("decided_by"))
                    .col(timestamp_with_time_zone_null("decided_at"))
                    .foreign_key(&mut fk("join_requests", "project_id", "projects"))
                    .foreign_key(&mut fk("join_requests", "user_id", "users"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "join_requests",
                "join_requests_project_status",
                &["project_id", "status"],
                false,
            ))
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("ssh_keys")
                    .col(pk_auto("id"))
                    .col(integer("user_id"))
                    .col(string_len("algorithm", 64))
                    .col(text("public_key"))
                    .col(string_len("comment", 200))
                    .col(string_len("fingerprint", 100))
                    .col(timestamp_with_time_zone("created_at"))
                    .foreign_key(&mut fk("ssh_keys", "user_id", "users"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index("ssh_keys", "ssh_keys_user_fingerprint", &["user_id", "fingerprint"], true))
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("api_tokens")
                    .col(pk_auto("id"))
                    .col(integer("user_id"))
                    .col(string_len("name", 100))
                    .col(string_len("scopes", 64))
                    .col(string_len_uniq("token_hash", 64))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone_null("last_used_at"))
                    .col(timestamp_with_time_zone_null("revoked_at"))
                    .foreign_key(&mut fk("api_tokens", "user_id", "users"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("sessions")
                    .col(string_len("id", 64).primary_key())
                    .col(blob("data"))
                    .col(big_integer("expiry_date"))
                    .to_owned(),
            )
            .await?;
        manager.create_index(index("sessions", "sessions_expiry", &["expiry_date"], false)).await?;
        manager
            .create_table(
                Table::create()
                    .table("audit_log")
                    .col(pk_auto("id"))
                    .col(timestamp_with_time_zone("at"))
                    .col(integer_null("actor_id"))
                    .col(string_len("action", 64))
                    .col(string_len("target", 200))
                    .col(text("detail"))
                    .to_owned(),
            )
            .await?;
        manager.create_index(index("audit_log", "audit_log_at", &["at"], false)).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "audit_log",
            "sessions",
            "api_tokens",
            "ssh_keys",
            "join_requests",
            "memberships",
            "projects",
            "users",
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
