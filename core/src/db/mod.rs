//! The database: connection, migrations, entities, and the session store that lives beside them.
//!
//! SQLite is the embedded default; PostgreSQL is for production. Both run the same migrations and the same
//! queries, and the test suite runs on both.

pub mod claim;
pub mod entity;
pub mod session_store;

use crate::error::AppError;
use migrations::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection, DbErr, SqlErr, Statement,
    TransactionTrait,
};
use std::time::Duration;

/// Connects to `url` (`sqlite://…?mode=rwc` or `postgres://…`) and brings the schema up to date.
pub async fn connect_and_migrate(url: &str, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    let db = connect(url, max_connections).await?;
    Migrator::up(&db, None).await?;
    Ok(db)
}

pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    options.max_connections(max_connections).acquire_timeout(Duration::from_secs(5)).sqlx_logging(false);
    let db = Database::connect(options).await?;
    if db.get_database_backend() == DatabaseBackend::Sqlite {
        // WAL lets readers proceed during a write (it is a property of the file, set once). sqlx already
        // turns foreign keys on and sets a busy timeout on every SQLite connection.
        db.execute_unprepared("PRAGMA journal_mode=WAL").await?;
    }
    Ok(db)
}

/// Whether `err` is the violation of a unique index or constraint (on either database).
pub fn is_unique_violation(err: &DbErr) -> bool {
    matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

/// Maps a unique violation to the error `on_unique` makes (what the caller should hear: "exists already"),
/// and any other database error to the usual `internal` one.
pub fn unique_as(err: DbErr, on_unique: impl FnOnce() -> AppError) -> AppError {
    if is_unique_violation(&err) { on_unique() } else { err.into() }
}

/// Serialises the writers of one user's rows for the rest of the transaction `txn`, so that a count checked
/// against a limit stays true until the insert commits.
///
/// PostgreSQL locks the user's row (`SELECT … FOR UPDATE`): a second transaction for the same user waits
/// here until the first commits, then counts what it wrote. SQLite has one writer at a time, and a deferred
/// transaction that reads first and writes later fails (`SQLITE_BUSY_SNAPSHOT`, without waiting) when another
/// writer committed in between; so the first statement here is a write, which takes the database's write
/// lock (waiting for it under the busy timeout) before anything is counted. sea-query drops lock clauses on
/// SQLite, hence raw SQL per backend.
pub async fn lock_user(txn: &impl ConnectionTrait, user_id: i32) -> Result<(), DbErr> {
    let backend = txn.get_database_backend();
    let sql = match backend {
        DatabaseBackend::Postgres => "SELECT id FROM users WHERE id = $1 FOR UPDATE",
        DatabaseBackend::Sqlite => "UPDATE users SET is_operator = is_operator WHERE id = ?",
        other => return Err(DbErr::Custom(format!("lock_user: unsupported backend {other:?}"))),
    };
    txn.execute_raw(Statement::from_sql_and_values(backend, sql, [user_id.into()])).await?;
    Ok(())
}

/// Begins a transaction that will write after reading, taking SQLite's write lock at once.
///
/// A deferred SQLite transaction that reads first and writes later fails at its first write
/// (`SQLITE_BUSY`, "database is locked", without waiting) when another connection wrote in between; so on
/// SQLite the first statement here is a write (an update of no row still takes the write lock, waiting for
/// it under the busy timeout). PostgreSQL needs nothing: its row locks and MVCC handle it.
pub async fn begin_writing<C: TransactionTrait>(db: &C) -> Result<C::Transaction, DbErr>
where
    C::Transaction: ConnectionTrait,
{
    let txn = db.begin().await?;
    if txn.get_database_backend() == DatabaseBackend::Sqlite {
        txn.execute_unprepared("UPDATE reconcile_tasks SET kind = kind WHERE id IS NULL").await?;
    }
    Ok(txn)
}
