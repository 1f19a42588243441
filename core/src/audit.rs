//! The audit log: one row per security-relevant action (logins, grants, keys, tokens, membership changes).
//! Never holds a secret: no password, no token, no key material beyond fingerprints.

use crate::db::entity::audit;
use crate::error::AppResult;
use sea_orm::{ActiveModelTrait, ConnectionTrait, Set};

pub async fn record(
    db: &impl ConnectionTrait,
    actor_id: Option<i32>,
    action: &str,
    target: &str,
    detail: serde_json::Value,
) -> AppResult<()> {
    audit::ActiveModel {
        at: Set(chrono::Utc::now()),
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
