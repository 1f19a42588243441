//! Storage and rules for users. Every SQL statement about users is here.

use crate::audit;
use crate::auth::{Caller, hash_password, verify_password};
use crate::clock::Clock;
use crate::db::{entity::user, unique_as};
use crate::error::{AppError, AppResult};
use model::accounts::UserView;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set, TransactionSession,
    TransactionTrait,
};
use serde_json::json;

pub const MIN_PASSWORD: usize = 10;
pub const MAX_PASSWORD: usize = 1024;

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

pub fn normalize_email(email: &str) -> AppResult<String> {
    let email = email.trim().to_lowercase();
    if email.len() > 254 || !email_address::EmailAddress::is_valid(&email) {
        return Err(AppError::invalid("email", "enter a valid email address, like ada@example.org"));
    }
    Ok(email)
}

pub fn validate_name(name: &str) -> AppResult<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(AppError::invalid("name", "enter your name (1 to 100 characters)"));
    }
    if name.chars().any(char::is_control) {
        return Err(AppError::invalid("name", "the name must not contain control characters"));
    }
    Ok(name.to_owned())
}

pub fn validate_password(password: &str) -> AppResult<()> {
    let n = password.chars().count();
    if n < MIN_PASSWORD {
        return Err(AppError::invalid(
            "password",
            format!("the password needs at least {MIN_PASSWORD} characters"),
        ));
    }
    if password.len() > MAX_PASSWORD {
        return Err(AppError::invalid(
            "password",
            format!("the password may have at most {MAX_PASSWORD} bytes"),
        ));
    }
    Ok(())
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
    let password_hash = hash_password(password)?;
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

pub async fn register<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    clock: &Clock,
    email: &str,
    name: &str,
    password: &str,
) -> AppResult<UserView> {
    create_user(db, clock, email, name, password, false).await
}

/// Checks an email and password. The same error for an unknown email and a wrong password, and the same
/// work (one argon2 verification) for both, so neither reveals which accounts exist.
pub async fn authenticate(
    db: &impl ConnectionTrait,
    clock: &Clock,
    email: &str,
    password: &str,
) -> AppResult<UserView> {
    static DUMMY: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| hash_password("not a password of anyone").unwrap_or_default());
    let email = email.trim().to_lowercase();
    let found = user::Entity::find().filter(user::Column::Email.eq(&email)).one(db).await?;
    let ok = verify_password(password, found.as_ref().map_or(DUMMY.as_str(), |u| u.password_hash.as_str()));
    match found {
        Some(user) if ok => {
            audit::record(db, clock.now(), Some(user.id), "login", &email, json!({ "ok": true })).await?;
            Ok(user.into())
        }
        _ => {
            audit::record(db, clock.now(), None, "login", &email, json!({ "ok": false })).await?;
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
    let email = email.trim().to_lowercase();
    let txn = db.begin().await?;
    let user = user::Entity::find()
        .filter(user::Column::Email.eq(&email))
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::not_found(format!("user {email}")))?;
    let mut active: user::ActiveModel = user.into();
    active.is_operator = Set(operator);
    let user = active.update(&txn).await?;
    audit::record(&txn, clock.now(), None, "user.operator", &email, json!({ "operator": operator })).await?;
    txn.commit().await?;
    Ok(user.into())
}
