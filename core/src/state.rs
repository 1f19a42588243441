//! What every request, service and background loop of the portal shares: the database, the clock, where the
//! testbed is, and the settings the services need. Cheap to clone.

use crate::{clock::Clock, testbed};
use sea_orm::DatabaseConnection;
use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct AppState {
    pub db: DatabaseConnection,
    /// The portal's time; services read it instead of the system clock, so tests can scale or pause it.
    pub clock: Clock,
    /// The testbed the portal talks to (the embedded reference testbed, or a configured PLCAPI). `None`
    /// where no testbed is needed (the `admin` commands, some tests).
    pub testbed: Option<Arc<dyn testbed::Testbed>>,
    pub settings: Arc<Settings>,
    /// The agents' API (manifests, heartbeats); `None` where no agent calls (the `admin` commands).
    pub agents: Option<Arc<crate::slivers::agent_api::AgentApi>>,
}

/// The portal settings the services need (the binary's configuration is read in `server`).
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// Where users reach the portal, if known (`https://…` makes cookies `Secure`).
    pub public_url: Option<String>,
}

impl AppState {
    /// A state on `db` with the real clock, no testbed and default settings.
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db, clock: Clock::real(), testbed: None, settings: Arc::default(), agents: None }
    }
}
