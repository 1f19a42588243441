//! The `portolan` server: configuration, the HTTP application, the REST API, and the commands of the binary.

pub mod agent;
pub mod api;
pub mod commands;
pub mod config;
pub mod csrf;
pub mod web;

use chrono::TimeDelta;
use config::Config;
use portolan_core::{
    db, liveness,
    nodes::discovery::{Discovery, Schedule, Task},
    slivers::{self, Artifact, agent_api::AgentApi, ingest::Ingest},
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
    // The embedded testbed may run its time scaled (demos: an hour in a minute); the portal's clock then
    // runs at the same scale, so that its waits and the testbed's guarantees agree.
    let clock = match (&config.testbed_url, config.testbed_time_scale) {
        (None, scale) if scale != 1.0 => portolan_core::clock::Clock::scaled(chrono::Utc::now(), scale),
        _ => portolan_core::clock::Clock::real(),
    };
    AppState {
        testbed,
        clock,
        settings: Arc::new(Settings { public_url: config.public_url.clone() }),
        ..AppState::new(db)
    }
}

/// How slivers are brought up and watched, from the configuration; the portal listens on `bound`.
pub fn sliver_settings(
    config: &Config,
    bound: std::net::SocketAddr,
    artifact: Option<Artifact>,
) -> slivers::Settings {
    let secs = |s: f64| TimeDelta::milliseconds((s * 1000.0) as i64);
    slivers::Settings {
        agent_url: config.agent_url(bound),
        artifact,
        heartbeat: secs(config.heartbeat_s),
        silence: secs(config.silence_s),
        concurrency: config.bringup_concurrency,
        ..slivers::Settings::default()
    }
}

/// The agent binary slivers get (`agent_binary`, else the running executable), hashed off the async workers.
/// `None`, logged, if it cannot be read: bring-ups then fail at `install` with that reason.
pub async fn agent_artifact(config: &Config) -> Option<Artifact> {
    let path = match config.agent_binary.clone().map_or_else(std::env::current_exe, Ok) {
        Ok(path) => path,
        Err(e) => {
            tracing::error!(error = %e, "cannot tell which binary to hand to slivers");
            return None;
        }
    };
    let shown = path.display().to_string();
    match tokio::task::spawn_blocking(move || Artifact::of(path)).await {
        Ok(Ok(artifact)) => {
            tracing::info!(path = %shown, sha256 = %artifact.sha256, bytes = artifact.bytes, "agent binary");
            Some(artifact)
        }
        Ok(Err(e)) => {
            tracing::error!(path = %shown, error = %e, "cannot read the agent binary (PORTOLAN_AGENT_BINARY)");
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "hashing the agent binary failed");
            None
        }
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
    let mut state = state;
    let bound = listener.local_addr()?;
    // The binary is hashed (a second for a debug build) only where slivers are brought up: with a testbed,
    // or when one is named.
    let artifact = match state.testbed.is_some() || config.agent_binary.is_some() {
        true => agent_artifact(config).await,
        false => None,
    };
    let settings = Arc::new(sliver_settings(config, bound, artifact));
    let ingest = Ingest::new();
    state.agents = Some(Arc::new(AgentApi::new(
        state.db.clone(),
        state.clock.clone(),
        settings.clone(),
        state.testbed.clone(),
        ingest.clone(),
    )));
    let stop_ingest = tokio_util::sync::CancellationToken::new();
    let writer = tokio::spawn({
        let (ingest, db, stop) = (ingest.clone(), state.db.clone(), stop_ingest.clone());
        async move { ingest.run(db, stop).await }
    });
    let supervisor = background(&state, config, settings).await;
    let app = web::router(state, config);
    let served = web::serve(listener, app, config.header_timeout(), shutdown).await;
    // The loops stop after the last request is answered (or at once, if serving failed), then the
    // heartbeat writer, after writing what is pending.
    supervisor.shutdown().await;
    stop_ingest.cancel();
    let _ = writer.await;
    served?;
    Ok(())
}

/// How often expired sessions are deleted (loading one checks its expiry anyway; this only reclaims rows).
pub const SESSION_EXPIRY_PERIOD: TimeDelta = TimeDelta::hours(1);

/// Starts the portal's background loops under one supervisor, on the state's clock.
pub async fn background(state: &AppState, config: &Config, slivers: Arc<slivers::Settings>) -> Supervisor {
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
        match slivers::portal_identity(&state.db, state.clock.now()).await {
            Ok(identity) => start_liveness(&mut supervisor, state, config, testbed, identity, slivers),
            Err(e) => tracing::error!(error = %e, "no SSH identity: slivers are not brought up"),
        }
    }
    let db = state.db.clone();
    let clock = state.clock.clone();
    // Older metrics folded into coarser buckets, and the nodes' reliability (their week's availability)
    // and recent failures, which the mapper weighs, recomputed from the pools' history.
    supervisor.every("monitor", MONITOR_PERIOD, move || {
        let (db, now) = (db.clone(), clock.now());
        async move {
            liveness::monitor::downsample(&db, now).await?;
            liveness::stats::refresh_reliability(&db, now).await.map(|_| ())
        }
    });
    supervisor
}

/// How often the bring-up and liveness loops look for due slivers and nodes.
pub const SLIVER_POLL: TimeDelta = TimeDelta::seconds(1);
pub const LIVENESS_POLL: TimeDelta = TimeDelta::seconds(5);
/// How often older metrics are folded into coarser buckets and the nodes' reliability recomputed.
pub const MONITOR_PERIOD: TimeDelta = TimeDelta::minutes(10);

fn start_liveness(
    supervisor: &mut Supervisor,
    state: &AppState,
    config: &Config,
    testbed: &Arc<dyn Testbed>,
    identity: portolan_core::ssh::Identity,
    slivers: Arc<slivers::Settings>,
) {
    let reconciler = slivers::reconcile::Reconciler::new(
        state.db.clone(),
        state.clock.clone(),
        testbed.clone(),
        identity.clone(),
        slivers.clone(),
    );
    supervisor.every("slivers", SLIVER_POLL, move || {
        let reconciler = reconciler.clone();
        async move { reconciler.pass().await.map(|_| ()) }
    });
    let settings = liveness::Settings {
        service_slice: config.service_slice.clone(),
        url: slivers.agent_url.clone(),
        testbed_user: testbed_user(config),
        batch: config.liveness_batch,
        silence: slivers.silence,
        ..liveness::Settings::default()
    };
    let liveness = Arc::new(liveness::Liveness::new(
        state.db.clone(),
        state.clock.clone(),
        testbed.clone(),
        identity,
        settings,
    ));
    supervisor.every("liveness", LIVENESS_POLL, move || {
        let liveness = liveness.clone();
        async move { liveness.pass().await.map(|_| ()) }
    });
}

/// The testbed account the portal acts as: the configured one, or the embedded testbed's admin.
fn testbed_user(config: &Config) -> String {
    match (&config.testbed_url, &config.testbed_user) {
        (Some(_), Some(user)) => user.clone(),
        _ => commands::EMBEDDED_ADMIN.to_owned(),
    }
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
