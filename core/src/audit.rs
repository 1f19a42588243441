//! The audit log: one row per security-relevant action (logins, grants, keys, tokens, membership changes).
//! Never holds a secret: no password, no token, no key material beyond fingerprints.
//!
//! A service records its row on the connection or transaction it changed things on, so that the change and
//! its audit row commit together (or not at all). The time is the caller's (the portal's clock).

use crate::db::entity::audit;
use crate::error::AppResult;
use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, ConnectionTrait, Set};

pub async fn record(
    db: &impl ConnectionTrait,
    at: DateTime<Utc>,
    actor_id: Option<i32>,
    action: &str,
    target: &str,
    detail: serde_json::Value,
) -> AppResult<()> {
    audit::ActiveModel {
        at: Set(at),
        actor_id: Set(actor_id),
        action: Set(action.to_owned()),
        target: Set(target.to_owned()),
        detail: Set(detail.to_string()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(())
}
