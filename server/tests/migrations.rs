//! The migrations on a database that already holds rows: the first schema is created alone, filled with raw
//! SQL the way the previous release stored things (including what this integrity step must mend),
//! then the rest run; then every later migration is taken down and run again. On SQLite and PostgreSQL.

mod common;

use common::scalar;

use migrations::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbErr};

/// A fresh, empty database of `backend`, and what must live as long as it (SQLite's directory).
async fn empty(backend: &str) -> (DatabaseConnection, Option<tempfile::TempDir>) {
    if backend == "sqlite" {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display());
        return (Database::connect(&url).await.unwrap(), Some(dir));
    }
    (Database::connect(common::fresh_postgres_database().await).await.unwrap(), None)
}

async fn exec(db: &DatabaseConnection, sql: &str) -> Result<(), DbErr> {
    db.execute_unprepared(sql).await.map(drop)
}

/// What the previous release could have stored: two users and a third since deleted (who had decided a
/// request), a project, members, two pending asks by one user (check-then-insert raced), keys, tokens,
/// sessions and audit rows.
async fn fill_the_first_schema(db: &DatabaseConnection) {
    for sql in [
        "INSERT INTO users (id, email, name, password_hash, is_operator, created_at) VALUES
           (1, 'ada@example.org', 'Ada', '$argon2id$x', false, '2026-11-26 10:00:00+00'),
           (2, 'bob@example.org', 'Bob', '$argon2id$y', false, '2026-11-26 10:00:00+00')",
        "INSERT INTO projects (id, name, description, created_by, created_at) VALUES
           (1, 'wanlab', 'wide-area', 1, '2026-11-26 10:00:00+00')",
        "INSERT INTO memberships (project_id, user_id, role, created_at) VALUES
           (1, 1, 'leader', '2026-11-26 10:00:00+00')",
        "INSERT INTO join_requests (id, project_id, user_id, message, status, created_at, decided_by, decided_at)
         VALUES
           (1, 1, 2, 'first ask', 'pending', '2026-11-26 10:00:00+00', NULL, NULL),
           (2, 1, 2, 'second ask', 'pending', '2026-11-26 10:00:01+00', NULL, NULL),
           (3, 1, 2, 'an old one', 'rejected', '2026-11-25 10:00:00+00', 99, '2026-11-25 11:00:00+00')",
        "INSERT INTO ssh_keys (id, user_id, algorithm, public_key, comment, fingerprint, created_at) VALUES
           (1, 2, 'ssh-ed25519', 'ssh-ed25519 AAAA bob@lab', 'bob@lab', 'SHA256:x', '2026-11-26 10:00:00+00')",
        "INSERT INTO api_tokens (id, user_id, name, scopes, token_hash, created_at) VALUES
           (1, 2, 'laptop', 'read,write', 'aa', '2026-11-26 10:00:00+00')",
        "INSERT INTO audit_log (at, actor_id, action, target, detail) VALUES
           ('2026-11-26 10:00:00+00', 1, 'project.create', 'wanlab', '{}')",
    ] {
        exec(db, sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let blob = match db.get_database_backend() {
        sea_orm::DatabaseBackend::Postgres => "'\\x00'::bytea",
        _ => "x'00'",
    };
    exec(db, &format!("INSERT INTO sessions (id, data, expiry_date) VALUES ('s1', {blob}, 1900000000)"))
        .await
        .unwrap();
    if db.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        // Explicit ids leave the sequences behind; the previous release's inserts had advanced them.
        for table in ["users", "projects", "join_requests", "ssh_keys", "api_tokens"] {
            exec(db, &format!("SELECT setval('{table}_id_seq', (SELECT MAX(id) FROM {table}))"))
                .await
                .unwrap();
        }
    }
}

/// What the later migrations must have made of those rows (and must keep making after down and up).
async fn check_the_rows_and_rules(db: &DatabaseConnection) {
    assert_eq!(scalar(db, "SELECT COUNT(*) FROM users").await, 2);
    assert_eq!(scalar(db, "SELECT COUNT(*) FROM memberships").await, 1);
    assert_eq!(scalar(db, "SELECT COUNT(*) FROM ssh_keys").await, 1);
    assert_eq!(scalar(db, "SELECT COUNT(*) FROM api_tokens").await, 1);
    assert_eq!(scalar(db, "SELECT COUNT(*) FROM sessions").await, 1);
    assert_eq!(scalar(db, "SELECT COUNT(*) FROM audit_log").await, 1);
    // The later duplicate ask went, the oldest stayed; the vanished decider is forgotten.
    assert_eq!(
        scalar(db, "SELECT CAST(MIN(id) AS BIGINT) FROM join_requests WHERE status = 'pending'").await,
        1
    );
    assert_eq!(scalar(db, "SELECT COUNT(*) FROM join_requests").await, 2);
    assert_eq!(scalar(db, "SELECT COUNT(*) FROM join_requests WHERE decided_by IS NOT NULL").await, 0);
    // The rules hold on the old rows.
    let pending = "INSERT INTO join_requests (project_id, user_id, message, status, created_at)
                   VALUES (1, 2, 'third ask', 'pending', '2026-12-01 10:00:00+00')";
    assert!(exec(db, pending).await.is_err(), "a second pending ask");
    assert!(exec(db, "DELETE FROM users WHERE id = 1").await.is_err(), "a project's creator");
    assert!(exec(db, "UPDATE memberships SET role = 'owner'").await.is_err(), "an unknown role");
    assert!(exec(db, "UPDATE join_requests SET decided_by = 99 WHERE id = 3").await.is_err(), "no such user");
    assert_eq!(scalar(db, "SELECT COUNT(*) FROM projects").await, 1);
    assert_eq!(scalar(db, "SELECT COUNT(*) FROM login_throttle").await, 0);
    assert_eq!(scalar(db, "SELECT COUNT(*) FROM reconcile_tasks").await, 0);
}

async fn later_migrations_keep_existing_rows(backend: &str) {
    let (db, _dir) = empty(backend).await;
    Migrator::up(&db, Some(1)).await.unwrap();
    fill_the_first_schema(&db).await;
    Migrator::up(&db, None).await.unwrap();
    check_the_rows_and_rules(&db).await;

    // Down to the first schema (every later step's down), and up again: the rows stay, the rules return.
    let later = Migrator::migrations().len() as u32 - 1;
    Migrator::down(&db, Some(later)).await.unwrap();
    assert_eq!(Migrator::get_applied_migrations(&db).await.unwrap().len(), 1);
    // The first schema's rules again: a second pending ask naming a vanished decider is stored.
    exec(
        &db,
        "INSERT INTO join_requests (project_id, user_id, message, status, created_at, decided_by)
               VALUES (1, 2, 'ask again', 'pending', '2026-12-01 10:00:00+00', 99)",
    )
    .await
    .unwrap();
    Migrator::up(&db, None).await.unwrap();
    // The integrity step mended the row stored meanwhile like the old ones (a later duplicate ask: gone).
    assert_eq!(scalar(&db, "SELECT COUNT(*) FROM join_requests WHERE message = 'ask again'").await, 0);
    check_the_rows_and_rules(&db).await;
    // A new row takes the next id (PostgreSQL's sequences survived).
    exec(
        &db,
        "INSERT INTO users (email, name, password_hash, is_operator, created_at)
               VALUES ('carol@example.org', 'Carol', 'h', false, '2026-12-01 10:00:00+00')",
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn later_migrations_keep_existing_rows_on_sqlite() {
    later_migrations_keep_existing_rows("sqlite").await;
}

#[tokio::test]
async fn later_migrations_keep_existing_rows_on_postgres() {
    later_migrations_keep_existing_rows("postgres").await;
}
