//! The `portolan` server: configuration, the HTTP application, the REST API, and the commands of the binary.

pub mod api;
pub mod commands;
pub mod config;
pub mod csrf;
pub mod web;

use chrono::TimeDelta;
use config::Config;
use portolan_core::{
    db,
    nodes::discovery::{Discovery, Schedule, Task},
    state::{AppState, Settings},
    supervisor::Supervisor,
    testbed::{Endpoint, Testbed, plc},
};
use std::future::Future;
use std::sync::Arc;
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

/// The portal's shared state: the database, the real clock, the testbed (if one is known) and the settings
/// the services need.
pub fn app_state(
    config: &Config,
    db: sea_orm::DatabaseConnection,
    testbed: Option<Arc<dyn Testbed>>,
) -> AppState {
    AppState {
        testbed,
        settings: Arc::new(Settings { public_url: config.public_url.clone() }),
        ..AppState::new(db)
    }
}

/// Serves the portal on `db` (with no testbed) on `listener` until `shutdown` completes.
pub async fn serve(
    config: &Config,
    db: sea_orm::DatabaseConnection,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_state(config, app_state(config, db, None), listener, shutdown).await
}

/// Serves the portal with `state` on `listener` until `shutdown` completes, with its background loops.
pub async fn serve_state(
    config: &Config,
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let supervisor = background(&state, config);
    let app = web::router(state, config);
    let served = web::serve(listener, app, config.header_timeout(), shutdown).await;
    // The loops stop after the last request is answered (or at once, if serving failed).
    supervisor.shutdown().await;
    served?;
    Ok(())
}

/// How often expired sessions are deleted (loading one checks its expiry anyway; this only reclaims rows).
pub const SESSION_EXPIRY_PERIOD: TimeDelta = TimeDelta::hours(1);

/// Starts the portal's background loops under one supervisor, on the state's clock.
pub fn background(state: &AppState, config: &Config) -> Supervisor {
    let mut supervisor = Supervisor::new(state.clock.clone());
    let store = db::session_store::DbSessionStore::new(state.db.clone());
    supervisor.every("session-expiry", SESSION_EXPIRY_PERIOD, move || {
        let store = store.clone();
        async move { store.delete_expired().await }
    });
    if let Some(testbed) = &state.testbed {
        let discovery =
            Discovery::new(state.db.clone(), state.clock.clone(), testbed.clone(), schedule(config));
        for task in [Task::Nodes, Task::Paths] {
            let discovery = discovery.clone();
            // The pass claims its task only when due (the schedule lives in the database, shared by every
            // `serve` process); the loop merely looks often enough to start within seconds of that.
            supervisor.every(task.loop_name(), DISCOVERY_POLL, move || {
                let discovery = discovery.clone();
                async move { discovery.pass(task).await.map(|_| ()) }
            });
        }
    }
    supervisor
}

/// How often each discovery loop looks whether its task is due.
pub const DISCOVERY_POLL: TimeDelta = TimeDelta::seconds(5);

/// Discovery's schedule from the configuration.
pub fn schedule(config: &Config) -> Schedule {
    let secs = |s: f64| TimeDelta::milliseconds((s * 1000.0) as i64);
    Schedule {
        nodes_every: secs(config.discovery_nodes_s),
        paths_every: secs(config.discovery_paths_s),
        ..Schedule::default()
    }
}

/// The portal's PLCAPI client for `endpoint`, with the configured timeouts.
pub fn testbed_client(config: &Config, endpoint: Endpoint) -> anyhow::Result<Arc<dyn Testbed>> {
    let timeout = std::time::Duration::from_secs_f64(config.testbed_timeout_s);
    let settings =
        plc::Settings { request_timeout: timeout, deadline: timeout * 4, ..plc::Settings::default() };
    Ok(Arc::new(plc::Plc::new(endpoint, settings).map_err(anyhow::Error::msg)?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(super::redact("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(super::redact("sqlite://x.db?mode=rwc"), "sqlite://x.db?mode=rwc");
    }
}
