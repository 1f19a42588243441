//! Storage and rules for users. Every SQL statement about users is here.

use crate::audit;
use crate::auth::{Caller, hash_password, verify_password};
use crate::clock::Clock;
use crate::db::{entity::user, unique_as};
use crate::error::{AppError, AppResult};
use crate::{blocking, throttle};
use model::accounts::UserView;
use model::limits;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set, TransactionSession,
    TransactionTrait,
};
use serde_json::json;

/// The longest password a log-in checks, in bytes: registration took up to 1024 bytes before new passwords
/// were bounded to [`limits::PASSWORD_MAX_BYTES`], and those accounts must still log in (argon2's cost hardly depends on
/// the length; the bound only refuses absurd input before it is hashed).
pub const MAX_LOGIN_PASSWORD: usize = 1024;
/// The least zxcvbn score (0 to 4) a new password needs: 3 is "safely unguessable: moderate protection
/// from offline slow-hash scenario" (about 10^10 guesses).
pub const MIN_PASSWORD_SCORE: zxcvbn::Score = zxcvbn::Score::Three;
/// zxcvbn judges at most this many leading characters of a password. Its cost grows steeply with the
/// length on some patterns (punctuation runs: 1 ms at 32 characters, 0.6 s at 256, release build), and it
/// runs on the pool log-ins share, so a few such registrations would stall every log-in. A password whose
/// first 40 characters are easy to guess is refused however it goes on.
pub const STRENGTH_PREFIX: usize = 40;

impl From<user::Model> for UserView {
    fn from(u: user::Model) -> Self {
        UserView {
            id: u.id,
            email: u.email,
            name: u.name,
            is_operator: u.is_operator,
            created_at: u.created_at,
        }
    }
}

/// Trims and lower-cases an email and checks it: at most [`limits::EMAIL`] characters (the column), no
/// control characters, and a valid address.
pub fn normalize_email(email: &str) -> AppResult<String> {
    let email = email.trim();
    limits::line("email", "email address", email, limits::EMAIL)?;
    let email = email.to_lowercase();
    if email.chars().count() > limits::EMAIL || !email_address::EmailAddress::is_valid(&email) {
        return Err(AppError::invalid("email", "enter a valid email address, like ada@example.org"));
    }
    Ok(email)
}

pub fn validate_name(name: &str) -> AppResult<String> {
    let name = name.trim();
    if name.is_empty() {
        return Err(AppError::invalid(
            "name",
            format!("enter your name (1 to {} characters)", limits::USER_NAME),
        ));
    }
    limits::line("name", "name", name, limits::USER_NAME)?;
    Ok(name.to_owned())
}

pub fn validate_password(password: &str) -> AppResult<()> {
    let n = password.chars().count();
    if n < limits::PASSWORD_MIN {
        return Err(AppError::invalid(
            "password",
            format!("the password needs at least {} characters", limits::PASSWORD_MIN),
        ));
    }
    if password.len() > limits::PASSWORD_MAX_BYTES {
        return Err(too_long_password(limits::PASSWORD_MAX_BYTES));
    }
    Ok(())
}

fn too_long_password(max: usize) -> AppError {
    AppError::invalid("password", format!("the password may have at most {max} bytes"))
}

/// Refuses a password that is easy to guess (zxcvbn score below [`MIN_PASSWORD_SCORE`]), counting the
/// user's email, its parts and their name as known words; the message says why, in zxcvbn's words.
pub fn check_password_strength(password: &str, email: &str, name: &str) -> AppResult<()> {
    let mut inputs: Vec<&str> = vec![email, name, "portolan"];
    inputs.extend(email.split(|c: char| !c.is_alphanumeric()).filter(|w| w.len() >= 3));
    inputs.extend(name.split_whitespace());
    let judged: String = password.chars().take(STRENGTH_PREFIX).collect();
    let entropy = zxcvbn::zxcvbn(&judged, &inputs);
    if entropy.score() >= MIN_PASSWORD_SCORE {
        return Ok(());
    }
    // zxcvbn's feedback: a warning (what is wrong, when it knows) and suggestions, as sentences.
    let feedback = entropy.feedback().map(ToString::to_string).unwrap_or_default();
    let feedback = if feedback.trim().is_empty() {
        "Add another word or two. Uncommon words are better.".to_owned()
    } else {
        feedback.trim().to_owned()
    };
    let why = format!("This password is too easy to guess. {feedback}");
    Err(AppError::invalid("password", why))
}

/// Creates a user. Used by registration and by `portolan admin create-user`. The user and its audit row
/// commit together.
pub async fn create_user<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    clock: &Clock,
    email: &str,
    name: &str,
    password: &str,
    operator: bool,
) -> AppResult<UserView> {
    let email = normalize_email(email)?;
    let name = validate_name(name)?;
    validate_password(password)?;
    {
        let (password, email, name) = (password.to_owned(), email.clone(), name.clone());
        blocking::run(&blocking::PASSWORDS, move || check_password_strength(&password, &email, &name))
            .await??;
    }
    let password_hash = hash_password(password).await?;
    let now = clock.now();
    let txn = db.begin().await?;
    let user = user::ActiveModel {
        email: Set(email.clone()),
        name: Set(name),
        password_hash: Set(password_hash),
        is_operator: Set(operator),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(&txn)
    .await
    .map_err(|e| unique_as(e, || AppError::invalid("email", "an account with this email exists already")))?;
    audit::record(&txn, now, Some(user.id), "user.create", &email, json!({ "operator": operator })).await?;
    txn.commit().await?;
    Ok(user.into())
}

/// Registers a user, throttled per client address (`client`, when known; [`throttle::REGISTRATIONS`]):
/// every attempt with well-formed input counts, successful or not, before the costly checks (strength,
/// hashing); malformed input is refused first and stores nothing, not even a count.
pub async fn register<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    clock: &Clock,
    email: &str,
    name: &str,
    password: &str,
    client: Option<std::net::IpAddr>,
) -> AppResult<UserView> {
    if let Some(addr) = client {
        normalize_email(email)?;
        validate_name(name)?;
        validate_password(password)?;
        let key = throttle::registration_key(addr);
        let now = clock.now();
        throttle::check(db, now, &[&key]).await?;
        throttle::reserve(db, now, &key, &throttle::REGISTRATIONS).await?;
    }
    create_user(db, clock, email, name, password, false).await
}

/// Checks an email and password, throttled per account and per client address (`client`, when known;
/// see [`throttle`]). The same error for an unknown email and a wrong password, the same work (one argon2
/// verification, against a dummy hash for an unknown email) and the same throttling for both, so neither
/// reveals which accounts exist. A malformed email or a password over [`MAX_LOGIN_PASSWORD`] bytes is refused
/// (400) before anything is hashed or stored; a failed attempt's audit row holds the validated email only.
pub async fn authenticate(
    db: &impl ConnectionTrait,
    clock: &Clock,
    email: &str,
    password: &str,
    client: Option<std::net::IpAddr>,
) -> AppResult<UserView> {
    let email = normalize_email(email)?;
    if password.len() > MAX_LOGIN_PASSWORD {
        return Err(too_long_password(MAX_LOGIN_PASSWORD));
    }
    let now = clock.now();
    let account_key = throttle::account_key(&email);
    let client_key = client.map(throttle::client_key);
    let keys: Vec<&str> = std::iter::once(account_key.as_str()).chain(client_key.as_deref()).collect();
    throttle::check(db, now, &keys).await?;
    let client_reservation = match &client_key {
        Some(key) => Some(throttle::reserve(db, now, key, &throttle::CLIENT).await?),
        None => None,
    };
    let account_reservation = match throttle::reserve(db, now, &account_key, &throttle::ACCOUNT).await {
        Ok(reservation) => reservation,
        Err(locked) => {
            if let Some(r) = &client_reservation {
                throttle::refund(db, r).await?;
            }
            return Err(locked);
        }
    };
    let found = user::Entity::find().filter(user::Column::Email.eq(&email)).one(db).await?;
    let ok = verify_password(password, found.as_ref().map(|u| u.password_hash.as_str())).await?;
    match found {
        Some(user) if ok => {
            throttle::forget(db, &account_reservation).await?;
            if let Some(r) = &client_reservation {
                throttle::refund(db, r).await?;
            }
            audit::record(db, now, Some(user.id), "login", &email, json!({ "ok": true })).await?;
            Ok(user.into())
        }
        _ => {
            throttle::prune(db, now).await?;
            audit::record(db, now, None, "login", &email, json!({ "ok": false })).await?;
            Err(AppError::new(crate::error::ErrorCode::Unauthenticated, "wrong email or password"))
        }
    }
}

pub async fn me(db: &impl ConnectionTrait, caller: &Caller) -> AppResult<UserView> {
    user::Entity::find_by_id(caller.user_id)
        .one(db)
        .await?
        .map(Into::into)
        .ok_or_else(AppError::unauthenticated)
}

/// Grants or withdraws the operator role (command line only); the change and its audit row commit together.
pub async fn set_operator<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    clock: &Clock,
    email: &str,
    operator: bool,
) -> AppResult<UserView> {
    let email = normalize_email(email)?;
    let txn = db.begin().await?;
    // A write first (see `keys::delete`): the command runs beside a serving portal on the same database.
    let user = user::Entity::update_many()
        .col_expr(user::Column::IsOperator, Expr::value(operator))
        .filter(user::Column::Email.eq(&email))
        .exec_with_returning(&txn)
        .await?
        .pop()
        .ok_or_else(|| AppError::not_found(format!("user {email}")))?;
    audit::record(&txn, clock.now(), None, "user.operator", &email, json!({ "operator": operator })).await?;
    txn.commit().await?;
    Ok(user.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_long_password_is_judged_by_its_first_characters() {
        let weak_start = format!("{}{}", "a".repeat(STRENGTH_PREFIX), "vq7#Lm2!zR9@wK4$");
        let err = check_password_strength(&weak_start, "ada@example.org", "Ada").unwrap_err();
        assert_eq!(err.field.as_deref(), Some("password"));
        check_password_strength(
            "tangerine ocelot quarry bellows, then a much longer tail that is never judged at all",
            "ada@example.org",
            "Ada",
        )
        .unwrap();
    }

    #[test]
    fn the_costliest_pattern_stays_cheap_at_the_longest_length() {
        // 0.6 s in a release build when zxcvbn judged all 256 characters; a few ms for the first 40.
        let worst: String =
            " .,?!'-/_:;+()@$\"#&*<>=[]\\~%^{}|1234567890".chars().cycle().take(256).collect();
        let start = Instant::now();
        let _ = check_password_strength(&worst, "ada@example.org", "Ada");
        assert!(start.elapsed() < Duration::from_millis(300), "took {:?}", start.elapsed());
    }
}
