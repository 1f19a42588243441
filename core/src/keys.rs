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

/// RSA moduli accepted, in bits: OpenSSH's own ceiling is 16384; below 2048 is refused as too weak.
pub const RSA_MIN_BITS: usize = 2048;
pub const RSA_MAX_BITS: usize = 16384;
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
    if text.len() > model::limits::KEY_TEXT {
        return Err(AppError::invalid(
            "public_key",
            format!("the key is longer than {} bytes", model::limits::KEY_TEXT),
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
    check_key_policy(key.key_data())?;
    let comment = key.comment().to_owned();
    model::limits::line("public_key", "key's comment", &comment, model::limits::KEY_COMMENT)?;
    let openssh = key.to_openssh().map_err(AppError::internal)?;
    Ok(ParsedKey {
        algorithm: key.algorithm().as_str().to_owned(),
        openssh,
        comment,
        fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
    })
}

/// Accepts the key types current OpenSSH accepts by default: ed25519, ECDSA on P-256, P-384 and P-521,
/// their FIDO security-key (`sk-`) variants, and RSA of [`RSA_MIN_BITS`] to [`RSA_MAX_BITS`] bits with an
/// odd modulus and an odd public exponent from 3 to 2^32 − 1 (65537 in practice; OpenSSL refuses even and
/// tiny exponents, and a huge one only makes every signature check slow). DSA is refused (OpenSSH disabled
/// it in 7.0 and removed it in 10.0), and so is anything else.
pub fn check_key_policy(key: &::ssh_key::public::KeyData) -> AppResult<()> {
    use ::ssh_key::public::KeyData;
    let refuse = |why: String| Err(AppError::invalid("public_key", why));
    match key {
        KeyData::Ed25519(_) | KeyData::Ecdsa(_) | KeyData::SkEd25519(_) | KeyData::SkEcdsaSha2NistP256(_) => {
            Ok(())
        }
        KeyData::Rsa(rsa) => {
            let n = rsa.n.as_positive_bytes().unwrap_or_default();
            let bits = n.first().map_or(0, |top| (n.len() - 1) * 8 + (8 - top.leading_zeros() as usize));
            if bits < RSA_MIN_BITS {
                return refuse(format!(
                    "RSA keys need at least {RSA_MIN_BITS} bits; this one has {bits}: make an ed25519 key \
                     (ssh-keygen -t ed25519)"
                ));
            }
            if bits > RSA_MAX_BITS {
                return refuse(format!("RSA keys may have at most {RSA_MAX_BITS} bits; this one has {bits}"));
            }
            if n.last().is_none_or(|low| low % 2 == 0) {
                return refuse("this RSA key's modulus is even: not an RSA key".to_owned());
            }
            let e = rsa.e.as_positive_bytes().unwrap_or_default();
            let exponent = (e.len() <= 4).then(|| e.iter().fold(0_u64, |acc, b| acc << 8 | u64::from(*b)));
            match exponent {
                Some(e) if e >= 3 && e % 2 == 1 => Ok(()),
                _ => refuse(
                    "this RSA key's public exponent is not an odd number from 3 to 2^32 - 1 (ssh-keygen uses \
                     65537)"
                        .to_owned(),
                ),
            }
        }
        KeyData::Dsa(_) => refuse(
            "DSA keys are no longer accepted by OpenSSH: make an ed25519 key \
             (ssh-keygen -t ed25519)"
                .to_owned(),
        ),
        other => refuse(format!(
            "keys of type {} are not accepted; use ed25519, ECDSA or RSA (2048 bits or more)",
            other.algorithm().as_str()
        )),
    }
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
    // One statement that deletes and reads back (for the audit row's fingerprint): on SQLite a transaction
    // that reads first and writes later fails when another writer committed in between, while one that
    // writes first waits for the write lock. Of concurrent deletes of one key, one finds it.
    let key = ssh_key::Entity::delete_many()
        .filter(ssh_key::Column::Id.eq(id))
        .filter(ssh_key::Column::UserId.eq(caller.user_id))
        .exec_with_returning(&txn)
        .await?
        .pop()
        .ok_or_else(|| AppError::not_found(format!("key {id}")))?;
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

    /// Generated by `ssh-keygen -t rsa -b 2048` (also server/tests/fixtures/ssh/rsa-2048.pub).
    const RSA_2048: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCpS7QOdauwa0ExY/lwJeDdjnimnPUJ3wrOa62xsjfowj/QTljzJZ4j1ygouOio9mkxjhhUjdoauSimsD9hk07/yh67cFpTKEjeANLhQrEnzhdKzpaSjT4cYxW30/h14aZx69BaBsauaNaIkG1s+zBVNndUfqiuKkAD+I2QO2FLtBu3KVk68wzkmW986tirFD/Nrv2irBroHw2i6zYPZNeLxQ6BCFn0wjwPUIfyarbSBuICZmoZSps1ZjU6JrnrmCmpdLy2vJs3zxjGVKO3MaOhUptcWOAdQ2F6hesvy5LQ6jW3XhZun+Ok6hGa53AZKt/iyWfWDWrdxfZ0kzjaPpiP fixture@lab";

    /// The fixture's modulus with another public exponent, as an OpenSSH line (built with the ssh-key crate).
    fn with_exponent(e: &[u8]) -> String {
        use ::ssh_key::{
            Mpint,
            public::{KeyData, RsaPublicKey},
        };
        let key = PublicKey::from_openssh(RSA_2048).unwrap();
        let KeyData::Rsa(rsa) = key.key_data() else { panic!("not RSA") };
        let data = KeyData::Rsa(RsaPublicKey { e: Mpint::from_positive_bytes(e).unwrap(), n: rsa.n.clone() });
        PublicKey::new(data, "crafted@lab").to_openssh().unwrap()
    }

    #[test]
    fn rsa_exponents_must_be_odd_from_3_below_2_to_the_32() {
        parse_key(RSA_2048).unwrap();
        for good in [&[3][..], &[1, 0, 1], &[0xff, 0xff, 0xff, 0xff]] {
            parse_key(&with_exponent(good)).unwrap_or_else(|e| panic!("{good:?}: {e:?}"));
        }
        let mut huge = vec![0x80; 256];
        huge[255] = 1;
        for bad in [&[1][..], &[2], &[1, 0, 0], &[1, 0, 0, 0, 1], &huge] {
            let err = parse_key(&with_exponent(bad)).unwrap_err();
            assert!(err.message.contains("exponent"), "{bad:?}: {err:?}");
        }
    }
}
