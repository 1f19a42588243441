//! Integrity: atomic join requests, what deleting a user does, and checked role, status and scope columns.
//!
//! **One pending join request per user and project**: a partial unique index `join_requests_one_pending` on
//! `(project_id, user_id) WHERE status = 'pending'` (both databases support partial indexes), so two
//! concurrent asks store one row. Duplicates stored before it are removed first, keeping the oldest ask.
//!
//! **Foreign keys** (every one of the first migration, decided one by one):
//!
//! | column | on delete of the parent | why |
//! |---|---|---|
//! | `projects.created_by` → users | **restrict** (was cascade) | a project, its members and soon its experiments and live slices must never vanish because its creator's account was deleted; hand the project over or delete it first |
//! | `join_requests.decided_by` → users | **set null** (had no foreign key) | the decision stands without the decider; who it was stays in the audit log |
//! | `memberships.project_id` → projects | cascade (kept) | a membership means nothing without its project |
//! | `memberships.user_id` → users | cascade (kept) | nor without its user; a creator cannot be deleted anyway (above) |
//! | `join_requests.project_id`, `.user_id` | cascade (kept) | an ask means nothing without its project or asker |
//! | `ssh_keys.user_id`, `api_tokens.user_id` | cascade (kept) | a deleted user's keys and tokens must stop working with the account |
//! | `audit_log.actor_id` | no foreign key (kept) | the log outlives the accounts it names |
//!
//! PostgreSQL gets real constraint changes. SQLite cannot alter a foreign key, and rebuilding `projects`
//! would need `PRAGMA foreign_keys=OFF` outside the migration's transaction (a `DROP TABLE` with foreign
//! keys on deletes every row first, firing the cascades onto memberships and join requests); so on SQLite
//! triggers do it: `users_restrict_projects` (`BEFORE DELETE ON users`) aborts the delete of a user who
//! created a project before the old cascade can run, and `users_set_null_decided_by` (`AFTER DELETE`) clears
//! `decided_by`, while `join_requests_decided_by_exists_*` refuse a `decided_by` naming no user.
//!
//! **Checked values**: `memberships.role` ∈ {`leader`, `member`}, `join_requests.status` ∈ {`pending`,
//! `approved`, `rejected`}, `api_tokens.scopes` ∈ {`read`, `read,write`}: a `CHECK` constraint on
//! PostgreSQL, `BEFORE INSERT` and `BEFORE UPDATE OF` triggers raising an abort on SQLite. Rows stored before
//! with another value stop the migration with a message naming them (nothing guesses what they meant).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend, Statement};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The checked columns: table, column, allowed values.
const CHECKED: [(&str, &str, &[&str]); 3] = [
    ("memberships", "role", &["leader", "member"]),
    ("join_requests", "status", &["pending", "approved", "rejected"]),
    ("api_tokens", "scopes", &["read", "read,write"]),
];

fn sql_list(values: &[&str]) -> String {
    values.iter().map(|v| format!("'{v}'")).collect::<Vec<_>>().join(", ")
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let backend = manager.get_database_backend();

        for (table, column, values) in CHECKED {
            let sql = format!(
                "SELECT COUNT(*) AS n FROM {table} WHERE {column} IS NULL OR {column} NOT IN ({})",
                sql_list(values)
            );
            let row = db.query_one_raw(Statement::from_string(backend, sql)).await?;
            let bad: i64 = row.map(|r| r.try_get("", "n")).transpose()?.unwrap_or(0);
            if bad > 0 {
                return Err(DbErr::Migration(format!(
                    "{bad} rows of {table} have a {column} other than {}: correct them, then migrate again",
                    values.join(", ")
                )));
            }
        }

        db.execute_unprepared(
            "DELETE FROM join_requests WHERE status = 'pending' AND EXISTS (
                SELECT 1 FROM join_requests AS older
                WHERE older.status = 'pending' AND older.project_id = join_requests.project_id
                  AND older.user_id = join_requests.user_id AND older.id < join_requests.id)",
        )
        .await?;
        db.execute_unprepared(
            "CREATE UNIQUE INDEX join_requests_one_pending ON join_requests (project_id, user_id)
             WHERE status = 'pending'",
        )
        .await?;
        db.execute_unprepared(
            "UPDATE join_requests SET decided_by = NULL
             WHERE decided_by IS NOT NULL AND decided_by NOT IN (SELECT id FROM users)",
        )
        .await?;

        match backend {
            DatabaseBackend::Postgres => {
                // The first migration's constraint was created unnamed: find it by what it links.
                db.execute_unprepared(
                    "DO $$
                     DECLARE c text;
                     BEGIN
                       FOR c IN SELECT conname FROM pg_constraint
                                WHERE conrelid = 'projects'::regclass AND confrelid = 'users'::regclass
                                  AND contype = 'f'
                       LOOP
                         EXECUTE format('ALTER TABLE projects DROP CONSTRAINT %I', c);
                       END LOOP;
                     END $$",
                )
                .await?;
                db.execute_unprepared(
                    "ALTER TABLE projects ADD CONSTRAINT projects_created_by_fkey
                     FOREIGN KEY (created_by) REFERENCES users (id) ON DELETE RESTRICT",
                )
                .await?;
                db.execute_unprepared(
                    "ALTER TABLE join_requests ADD CONSTRAINT join_requests_decided_by_fkey
                     FOREIGN KEY (decided_by) REFERENCES users (id) ON DELETE SET NULL",
                )
                .await?;
                for (table, column, values) in CHECKED {
                    db.execute_unprepared(&format!(
                        "ALTER TABLE {table} ADD CONSTRAINT {table}_{column}_check CHECK ({column} IN ({}))",
                        sql_list(values)
                    ))
                    .await?;
                }
            }
            DatabaseBackend::Sqlite => {
                db.execute_unprepared(
                    "CREATE TRIGGER users_restrict_projects BEFORE DELETE ON users
                     WHEN EXISTS (SELECT 1 FROM projects WHERE created_by = OLD.id)
                     BEGIN
                       SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed: the user created projects (projects.created_by restricts)');
                     END",
                )
                .await?;
                db.execute_unprepared(
                    "CREATE TRIGGER users_set_null_decided_by AFTER DELETE ON users
                     BEGIN
                       UPDATE join_requests SET decided_by = NULL WHERE decided_by = OLD.id;
                     END",
                )
                .await?;
                for (event, name) in [("INSERT", "insert"), ("UPDATE OF decided_by", "update")] {
                    db.execute_unprepared(&format!(
                        "CREATE TRIGGER join_requests_decided_by_exists_{name} BEFORE {event} ON join_requests
                         WHEN NEW.decided_by IS NOT NULL
                              AND NOT EXISTS (SELECT 1 FROM users WHERE id = NEW.decided_by)
                         BEGIN
                           SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed: join_requests.decided_by names no user');
                         END"
                    ))
                    .await?;
                }
                for (table, column, values) in CHECKED {
                    for (event, name) in [("INSERT", "insert"), (&*format!("UPDATE OF {column}"), "update")] {
                        db.execute_unprepared(&format!(
                            "CREATE TRIGGER {table}_{column}_check_{name} BEFORE {event} ON {table}
                             WHEN NEW.{column} IS NULL OR NEW.{column} NOT IN ({list})
                             BEGIN
                               SELECT RAISE(ABORT, 'CHECK constraint failed: {table}.{column} must be one of {shown}');
                             END",
                            list = sql_list(values),
                            shown = values.join(" "),
                        ))
                        .await?;
                    }
                }
            }
            other => return Err(DbErr::Migration(format!("unsupported database {other:?}"))),
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        match manager.get_database_backend() {
            DatabaseBackend::Postgres => {
                for (table, column, _) in CHECKED {
                    db.execute_unprepared(&format!(
                        "ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {table}_{column}_check"
                    ))
                    .await?;
                }
                db.execute_unprepared(
                    "ALTER TABLE join_requests DROP CONSTRAINT IF EXISTS join_requests_decided_by_fkey",
                )
                .await?;
                db.execute_unprepared(
                    "ALTER TABLE projects DROP CONSTRAINT IF EXISTS projects_created_by_fkey,
                     ADD CONSTRAINT projects_created_by_fkey
                     FOREIGN KEY (created_by) REFERENCES users (id) ON DELETE CASCADE",
                )
                .await?;
            }
            _ => {
                let mut triggers = vec![
                    "users_restrict_projects".to_owned(),
                    "users_set_null_decided_by".to_owned(),
                    "join_requests_decided_by_exists_insert".to_owned(),
                    "join_requests_decided_by_exists_update".to_owned(),
                ];
                for (table, column, _) in CHECKED {
                    triggers.push(format!("{table}_{column}_check_insert"));
                    triggers.push(format!("{table}_{column}_check_update"));
                }
                for trigger in triggers {
                    db.execute_unprepared(&format!("DROP TRIGGER IF EXISTS {trigger}")).await?;
                }
            }
        }
        db.execute_unprepared("DROP INDEX IF EXISTS join_requests_one_pending").await?;
        Ok(())
    }
}
