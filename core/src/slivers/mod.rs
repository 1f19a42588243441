//! Slivers: a slice's share of one node, brought up end to end and watched.
//!
//! A row of `slivers` is the portal's *desired* sliver (slice, node); its bring-up is a reconcile state
//! machine ([`reconcile`]) whose steps are each idempotent and bounded:
//!
//! 1. `bind`: the slice is bound to the node (and, in the node-manager generation, the node manager asked to
//!    `Create` it: the synchronous path);
//! 2. `wait`: the testbed's `GetSlivers` polled with backoff until the sliver exists, bounded by the
//!    testbed's guarantee (an hour);
//! 3. `connect` … `start`, in one pass over one SSH connection ([`bringup`]): the host key pinned, the agent's
//!    binary fetched from the portal and verified by checksum (skipped when the sliver has it), the sliver's
//!    credential minted (only its hash stored) and written, the agent started;
//! 4. `heartbeat`: waiting, bounded, for the agent's first heartbeat ([`agent_api`]), which makes it `ready`.
//!
//! Every attempt ends in a row of `sliver_attempts` (how long, which step failed, how it was classified).
//! After `ready`, heartbeats drive [`entity::Health`](crate::db::entity::Health): `up` while they come, `down`
//! after [`Settings::silence`] without one ([`crate::liveness`] sweeps), `up` again when they resume.
//!
//! What the outcome means for the node (pools) is [`crate::liveness`]'s, for service slivers.

pub mod agent_api;
pub mod bringup;
pub mod ingest;
pub mod reconcile;
pub mod storage;

use crate::db::entity::portal_identity;
use crate::ssh::Identity;
use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{ActiveModelTrait, ConnectionTrait, DbErr, EntityTrait, Set};
use std::path::PathBuf;
use std::time::Duration;

/// The agent binary the portal hands to slivers: the running `portolan` executable, served at
/// `/agent/v1/portolan/<sha256>`.
#[derive(Clone, Debug)]
pub struct Artifact {
    pub path: PathBuf,
    pub sha256: String,
    pub bytes: u64,
}

impl Artifact {
    /// Hashes the file at `path` (blocking: call it off the async workers, once at start).
    pub fn of(path: PathBuf) -> std::io::Result<Self> {
        use sha2::{Digest, Sha256};
        let mut file = std::fs::File::open(&path)?;
        let mut hasher = Sha256::new();
        let bytes = std::io::copy(&mut file, &mut hasher)?;
        Ok(Self { path, sha256: hex::encode(hasher.finalize()), bytes })
    }
}

/// How slivers are brought up and watched.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The portal's base URL as slivers reach it (agents heartbeat there; the binary is fetched there).
    pub agent_url: String,
    /// The agent binary, if the portal can hand one out (without it bring-up fails at `install`).
    pub artifact: Option<Artifact>,
    /// How often agents heartbeat.
    pub heartbeat: TimeDelta,
    /// Silence after which a sliver is down.
    pub silence: TimeDelta,
    /// Bring-ups running at once (per process).
    pub concurrency: usize,
    /// Bounds per step.
    pub connect_timeout: Duration,
    pub install_timeout: Duration,
    pub command_timeout: Duration,
    /// How long after the agent's start its first heartbeat may take.
    pub first_heartbeat: TimeDelta,
    /// The testbed's guarantee: a bound sliver exists within this (PlanetLab promised an hour).
    pub instantiation_guarantee: TimeDelta,
    /// Polls of `GetSlivers` while waiting: from `poll_min`, doubling, at most `poll_max`.
    pub poll_min: TimeDelta,
    pub poll_max: TimeDelta,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            agent_url: "http://127.0.0.1:3000".to_owned(),
            artifact: None,
            heartbeat: TimeDelta::seconds(30),
            silence: TimeDelta::seconds(120),
            concurrency: 128,
            connect_timeout: Duration::from_secs(30),
            install_timeout: Duration::from_secs(300),
            command_timeout: Duration::from_secs(30),
            first_heartbeat: TimeDelta::seconds(120),
            instantiation_guarantee: TimeDelta::hours(1),
            poll_min: TimeDelta::seconds(10),
            poll_max: TimeDelta::minutes(5),
        }
    }
}

impl Settings {
    /// Where slivers download the agent binary.
    pub fn artifact_url(&self) -> Option<String> {
        let artifact = self.artifact.as_ref()?;
        Some(format!("{}/agent/v1/portolan/{}", self.agent_url.trim_end_matches('/'), artifact.sha256))
    }

    /// The wait before poll number `polls` (0-based) of a sliver's instantiation.
    pub fn poll_delay(&self, polls: i32) -> TimeDelta {
        let doublings = polls.clamp(0, 16) as u32;
        (self.poll_min * 2_i32.pow(doublings)).min(self.poll_max)
    }
}

/// The portal's SSH identity: read from `portal_identity`, made (and stored) at first use. Two processes
/// starting at once on one database both try to insert; the loser reads the winner's.
pub async fn portal_identity(db: &impl ConnectionTrait, now: DateTime<Utc>) -> Result<Identity, DbErr> {
    if let Some(row) = portal_identity::Entity::find_by_id(1).one(db).await? {
        return Identity::from_openssh(&row.ssh_private_key).map_err(DbErr::Custom);
    }
    let identity = Identity::generate();
    let row = portal_identity::ActiveModel {
        id: Set(1),
        ssh_private_key: Set(identity.private_openssh()),
        ssh_public_key: Set(identity.public_openssh()),
        created_at: Set(now),
    };
    match row.insert(db).await {
        Ok(_) => Ok(identity),
        Err(e) if crate::db::is_unique_violation(&e) => {
            let row = portal_identity::Entity::find_by_id(1)
                .one(db)
                .await?
                .ok_or_else(|| DbErr::Custom("portal_identity vanished".to_owned()))?;
            Identity::from_openssh(&row.ssh_private_key).map_err(DbErr::Custom)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_double_up_to_the_cap() {
        let s = Settings::default();
        assert_eq!(s.poll_delay(0), TimeDelta::seconds(10));
        assert_eq!(s.poll_delay(1), TimeDelta::seconds(20));
        assert_eq!(s.poll_delay(4), TimeDelta::seconds(160));
        assert_eq!(s.poll_delay(5), TimeDelta::minutes(5));
        assert_eq!(s.poll_delay(500), TimeDelta::minutes(5));
    }
}
