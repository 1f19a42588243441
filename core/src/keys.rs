//! Storage and validation of SSH keys. Every SQL statement about keys is here.

use crate::audit;
use crate::auth::Caller;
use crate::clock::Clock;
use crate::db::{entity::ssh_key, lock_user, unique_as};
use crate::error::{AppError, AppResult};
use ::ssh_key::{HashAlg, PublicKey};
use model::keys::KeyView;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    Set, TransactionSession, TransactionTrait,
};
use serde_json::json;

/// The largest pasted key accepted (an RSA-16384 key is about 2.8 KB).
pub const MAX_KEY_LEN: usize = 8192;
pub const MAX_KEYS_PER_USER: u64 = 50;

/// A validated key: algorithm, the canonical OpenSSH line, comment and fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedKey {
    pub algorithm: String,
    pub openssh: String,
    pub comment: String,
    pub fingerprint: String,
}

/// Parses one OpenSSH public key line (`ssh-ed25519 AAAA… comment`). The message says what is wrong.
pub fn parse_key(text: &str) -> AppResult<ParsedKey> {
    let text = text.trim();
    if text.is_empty() {
        return Err(AppError::invalid(
            "public_key",
            "paste a public key, e.g. the contents of ~/.ssh/id_ed25519.pub",
        ));
    }
    if text.len() > MAX_KEY_LEN {
        return Err(AppError::invalid(
            "public_key",
            format!("the key is longer than {MAX_KEY_LEN} characters"),
        ));
    }
    if text.contains("PRIVATE KEY") {
        return Err(AppError::invalid(
            "public_key",
            "this is a private key: never share it; paste the .pub file instead",
        ));
    }
    if text.lines().count() > 1 {
        return Err(AppError::invalid("public_key", "paste exactly one key, on one line"));
    }
    let key = PublicKey::from_openssh(text).map_err(|e| {
        AppError::invalid(
            "public_key",
            format!("not an OpenSSH public key ({e}); expected `ssh-ed25519 AAAA… comment` or similar"),
        )
    })?;
    if let ::ssh_key::public::KeyData::Rsa(rsa) = key.key_data() {
        let bits = rsa.n.as_positive_bytes().map_or(0, |b| b.len() * 8);
        if bits < 2048 {
            return Err(AppError::invalid(
                "public_key",
                format!("RSA keys need at least 2048 bits; this one has {bits}"),
            ));
        }
    }
    let comment = key.comment().to_owned();
    if comment.len() > 200 || comment.chars().any(char::is_control) {
        return Err(AppError::invalid(
            "public_key",
            "the key's comment is too long or has control characters",
        ));
    }
    let openssh = key.to_openssh().map_err(AppError::internal)?;
    Ok(ParsedKey {
        algorithm: key.algorithm().as_str().to_owned(),
        openssh,
        comment,
        fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
    })
}

impl From<ssh_key::Model> for KeyView {
    fn from(k: ssh_key::Model) -> Self {
        KeyView {
            id: k.id,
            algorithm: k.algorithm,
            comment: k.comment,
            fingerprint: k.fingerprint,
            public_key: k.public_key,
            created_at: k.created_at,
        }
    }
}

pub async fn list(db: &impl ConnectionTrait, caller: &Caller) -> AppResult<Vec<KeyView>> {
    Ok(ssh_key::Entity::find()
        .filter(ssh_key::Column::UserId.eq(caller.user_id))
        .order_by_asc(ssh_key::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}

/// Adds a key. The limit holds under concurrency: the user's writers are serialised ([`lock_user`]) before
/// the keys are counted, and the count, the insert and the audit row are one transaction.
pub async fn add<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    clock: &Clock,
    caller: &Caller,
    text: &str,
) -> AppResult<KeyView> {
    caller.require_write()?;
    let parsed = parse_key(text)?;
    let now = clock.now();
    let txn = db.begin().await?;
    lock_user(&txn, caller.user_id).await?;
    let count =
        ssh_key::Entity::find().filter(ssh_key::Column::UserId.eq(caller.user_id)).count(&txn).await?;
    if count >= MAX_KEYS_PER_USER {
        return Err(AppError::invalid("public_key", format!("at most {MAX_KEYS_PER_USER} keys per user")));
    }
    let key = ssh_key::ActiveModel {
        user_id: Set(caller.user_id),
        algorithm: Set(parsed.algorithm),
        public_key: Set(parsed.openssh),
        comment: Set(parsed.comment),
        fingerprint: Set(parsed.fingerprint.clone()),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(&txn)
    .await
    .map_err(|e| {
        unique_as(e, || {
            AppError::invalid(
                "public_key",
                format!("you have added this key already ({})", parsed.fingerprint),
            )
        })
    })?;
    audit::record(&txn, now, Some(caller.user_id), "key.add", &key.fingerprint, json!({})).await?;
    txn.commit().await?;
    Ok(key.into())
}

pub async fn delete<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    clock: &Clock,
    caller: &Caller,
    id: i32,
) -> AppResult<()> {
    caller.require_write()?;
    let txn = db.begin().await?;
    let key = ssh_key::Entity::find_by_id(id)
        .filter(ssh_key::Column::UserId.eq(caller.user_id))
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::not_found(format!("key {id}")))?;
    let deleted = ssh_key::Entity::delete_by_id(key.id).exec(&txn).await?.rows_affected;
    if deleted == 0 {
        // Deleted meanwhile by a concurrent call, which recorded it.
        return Err(AppError::not_found(format!("key {id}")));
    }
    audit::record(&txn, clock.now(), Some(caller.user_id), "key.delete", &key.fingerprint, json!({})).await?;
    txn.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPI+DjeFyvcJhwoBHObkxNxeuORd3QSsOorXq16R8qpd ada@lab";

    #[test]
    fn parses_ed25519_with_fingerprint() {
        let key = parse_key(ED25519).unwrap();
        assert_eq!(key.algorithm, "ssh-ed25519");
        assert_eq!(key.comment, "ada@lab");
        // As `ssh-keygen -lf` prints it for this key.
        assert_eq!(key.fingerprint, "SHA256:qssXkA28cUCYLhXmSlC2AYhnAMm6Kfva0BVaSunHiWQ");
        assert_eq!(key.openssh, ED25519);
    }

    #[test]
    fn refuses_garbage_private_and_multi_line() {
        for (text, needle) in [
            ("", "paste a public key"),
            ("ssh-ed25519 not-base64", "not an OpenSSH public key"),
            ("-----BEGIN OPENSSH PRIVATE KEY-----", "private key"),
            (&format!("{ED25519}\n{ED25519}"), "exactly one key"),
        ] {
            let err = parse_key(text).unwrap_err();
            assert_eq!(err.field.as_deref(), Some("public_key"));
            assert!(err.message.contains(needle), "{text:?} gave {err:?}");
        }
    }
}
