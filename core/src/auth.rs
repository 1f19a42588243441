//! Who is calling: a browser session or an API token, resolved to a [`Caller`] that every service function
//! takes, so that authorization is decided in the service layer, the same for the UI and the REST API.

use crate::blocking;
use crate::clock::Clock;
use crate::db::entity::{api_token, user};
use crate::error::{AppError, AppResult};
use argon2::{
    Argon2,
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng},
};
use axum::http::{HeaderMap, header::AUTHORIZATION};
use model::tokens::Scope;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use sha2::{Digest, Sha256};
use tower_sessions::Session;

/// The session key under which the logged-in user's id is kept.
pub const SESSION_USER_KEY: &str = "user_id";
/// Every API token starts with this, so that leaked tokens are easy to scan for.
pub const TOKEN_PREFIX: &str = "ptl_";

/// How the caller proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    Session,
    Token { id: i32, scope: Scope },
}

/// An authenticated caller, as every service function sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: i32,
    pub operator: bool,
    pub via: Via,
}

impl Caller {
    /// Refuses read-only tokens.
    pub fn require_write(&self) -> AppResult<()> {
        match self.via {
            Via::Token { scope: Scope::Read, .. } => Err(AppError::forbidden("this API token is read-only")),
            _ => Ok(()),
        }
    }

    /// Refuses tokens altogether (e.g. for creating tokens).
    pub fn require_session(&self) -> AppResult<()> {
        match self.via {
            Via::Session => Ok(()),
            Via::Token { .. } => {
                Err(AppError::forbidden("this action needs a logged-in session, not an API token"))
            }
        }
    }
}

fn hash_now(password: &[u8]) -> AppResult<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default().hash_password(password, &salt).map(|hash| hash.to_string()).map_err(AppError::internal)
}

/// Hashes a password with argon2id (tens of milliseconds of CPU), on the bounded blocking pool
/// [`blocking::PASSWORDS`], never on an async worker.
pub async fn hash_password(password: &str) -> AppResult<String> {
    let password = password.as_bytes().to_vec();
    blocking::run(&blocking::PASSWORDS, move || hash_now(&password)).await?
}

/// Checks a password against a stored hash, on the blocking pool. With `None` (no such account) it checks
/// against a dummy hash of the same cost and answers `false`, so an unknown email takes as long as a
/// wrong password.
pub async fn verify_password(password: &str, stored_hash: Option<&str>) -> AppResult<bool> {
    static DUMMY: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    let (hash, real) = match stored_hash {
        Some(hash) => (hash.to_owned(), true),
        None => (DUMMY.get_or_try_init(|| hash_password("not the password of anyone")).await?.clone(), false),
    };
    let password = password.as_bytes().to_vec();
    let ok = blocking::run(&blocking::PASSWORDS, move || {
        PasswordHash::new(&hash).is_ok_and(|hash| Argon2::default().verify_password(&password, &hash).is_ok())
    })
    .await?;
    Ok(ok && real)
}

/// The token of an `Authorization: Bearer <token>` value. The scheme is case-insensitive (RFC 7235 §2.1).
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// A new random API token (shown once) and the hash that is stored.
pub fn new_token() -> (String, String) {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = format!("{TOKEN_PREFIX}{}", hex::encode(bytes));
    let hash = hash_token(&token);
    (token, hash)
}

/// How stale a token's `last_used_at` may get before a call updates it.
const LAST_USED_RESOLUTION: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// Tokens carry 256 random bits, so a plain SHA-256 is enough to store them safely (no salt or slow hash
/// needed, unlike passwords), and lets the lookup be an indexed equality.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn user_caller(user: &user::Model, via: Via) -> Caller {
    Caller { user_id: user.id, operator: user.is_operator, via }
}

/// The caller behind a `Authorization: Bearer …` header, if it holds a live token.
pub async fn caller_from_token(
    db: &impl ConnectionTrait,
    clock: &Clock,
    token: &str,
) -> AppResult<Option<Caller>> {
    let Some(row) = api_token::Entity::find()
        .filter(api_token::Column::TokenHash.eq(hash_token(token)))
        .filter(api_token::Column::RevokedAt.is_null())
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let scope: Scope = row.scopes.into();
    let (id, user_id) = (row.id, row.user_id);
    // "Last used" is shown to a minute: a script calling in a loop must not cost a write per call.
    let now = clock.now();
    if row.last_used_at.is_none_or(|at| now - at >= LAST_USED_RESOLUTION) {
        let mut active: api_token::ActiveModel = row.into();
        active.last_used_at = Set(Some(now));
        active.update(db).await?;
    }
    Ok(user::Entity::find_by_id(user_id).one(db).await?.map(|u| user_caller(&u, Via::Token { id, scope })))
}

pub async fn caller_from_session(db: &impl ConnectionTrait, session: &Session) -> AppResult<Option<Caller>> {
    Ok(session_user(db, session).await?.map(|(caller, _)| caller))
}

/// The caller behind a session and their account, from one query: a page needs both (who may see what,
/// and whose name to show).
pub async fn session_user(
    db: &impl ConnectionTrait,
    session: &Session,
) -> AppResult<Option<(Caller, model::accounts::UserView)>> {
    let user_id: Option<i32> = session.get(SESSION_USER_KEY).await.map_err(AppError::internal)?;
    let Some(id) = user_id else {
        return Ok(None);
    };
    Ok(user::Entity::find_by_id(id).one(db).await?.map(|u| (user_caller(&u, Via::Session), u.into())))
}

/// Resolves the caller: a bearer token wins over a session cookie; a present but bad token is refused
/// rather than silently falling back to the cookie.
pub async fn caller(
    db: &impl ConnectionTrait,
    clock: &Clock,
    headers: &HeaderMap,
    session: Option<&Session>,
) -> AppResult<Caller> {
    if let Some(value) = headers.get(AUTHORIZATION) {
        let token = value.to_str().ok().and_then(bearer_token).ok_or_else(AppError::unauthenticated)?;
        return caller_from_token(db, clock, token).await?.ok_or_else(AppError::unauthenticated);
    }
    match session {
        Some(session) => caller_from_session(db, session).await?.ok_or_else(AppError::unauthenticated),
        None => Err(AppError::unauthenticated()),
    }
}

/// Logs `user_id` in on `session`, with a fresh session id (defeats session fixation).
pub async fn log_in(session: &Session, user_id: i32) -> AppResult<()> {
    session.cycle_id().await.map_err(AppError::internal)?;
    session.insert(SESSION_USER_KEY, user_id).await.map_err(AppError::internal)
}

pub async fn log_out(session: &Session) -> AppResult<()> {
    session.flush().await.map_err(AppError::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for value in ["Bearer ptl_x", "bearer ptl_x", "BEARER ptl_x", "bEaReR   ptl_x  "] {
            assert_eq!(bearer_token(value), Some("ptl_x"), "{value:?}");
        }
        for value in ["Basic ptl_x", "Bearer", "Bearer ", "Bearerptl_x", "Bearer\tptl_x", ""] {
            assert_eq!(bearer_token(value), None, "{value:?}");
        }
    }

    #[tokio::test]
    async fn hashes_verify_and_an_unknown_account_never_does() {
        let hash = hash_password("a sound passphrase").await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("a sound passphrase", Some(&hash)).await.unwrap());
        assert!(!verify_password("another one", Some(&hash)).await.unwrap());
        // The dummy's own password does not open a missing account.
        assert!(!verify_password("not the password of anyone", None).await.unwrap());
        assert!(!verify_password("x", Some("not a hash")).await.unwrap());
    }
}
