//! The database: connection, migrations, entities, and the session store that lives beside them.
//!
//! SQLite is the embedded default; PostgreSQL is for production. Both run the same migrations and the same
//! queries, and the test suite runs on both.

pub mod entity;
pub mod session_store;

use migrations::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};
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
    if db.get_database_backend() == sea_orm::DatabaseBackend::Sqlite {
        use sea_orm::ConnectionTrait;
        // WAL lets readers proceed during a write (it is a property of the file, set once). sqlx already
        // turns foreign keys on and sets a busy timeout on every SQLite connection.
        db.execute_unprepared("PRAGMA journal_mode=WAL").await?;
    }
    Ok(db)
}
