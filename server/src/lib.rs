//! The `portolan` server: configuration, the HTTP application, the REST API, and the commands of the binary.

pub mod api;
pub mod commands;
pub mod config;
pub mod csrf;
pub mod web;

use config::Config;
use portolan_core::{db, state::AppState};
use std::{future::Future, time::Duration};
use tokio::net::TcpListener;
use tower_sessions::ExpiredDeletion;

/// Opens (and migrates) the configured database, creating the data directory for the embedded default.
pub async fn open_database(config: &Config) -> anyhow::Result<sea_orm::DatabaseConnection> {
    if config.database_url.is_none() {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot create the data directory {} (PORTOLAN_DATA_DIR): {e}",
                config.data_dir.display()
            )
        })?;
    }
    let url = config.database_url();
    db::connect_and_migrate(&url, config.db_max_connections)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the database ({}): {e}", redact(&url)))
}

/// A database URL fit for a log line: the password, if any, replaced.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}://{}:***@{}", &url[..scheme], user, &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// Serves the portal on `listener` until `shutdown` completes.
pub async fn serve(
    config: &Config,
    db: sea_orm::DatabaseConnection,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let store = db::session_store::DbSessionStore::new(db.clone());
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(3600));
        loop {
            every.tick().await;
            if let Err(e) = store.delete_expired().await {
                tracing::warn!(error = %e, "could not delete expired sessions");
            }
        }
    });
    let app = web::router(AppState::new(db), config);
    web::serve(listener, app, config.header_timeout(), shutdown).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(super::redact("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(super::redact("sqlite://x.db?mode=rwc"), "sqlite://x.db?mode=rwc");
    }
}
