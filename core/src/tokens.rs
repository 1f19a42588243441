//! Storage of API tokens. Every SQL statement about tokens is here.

use crate::audit;
use crate::auth::{Caller, new_token};
use crate::clock::Clock;
use crate::db::{entity::api_token, lock_user};
use crate::error::{AppError, AppResult};
use model::tokens::Scope;
use model::tokens::{NewToken, TokenView};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    Set, TransactionSession, TransactionTrait,
};
use serde_json::json;

pub const MAX_TOKENS_PER_USER: u64 = 100;

impl From<api_token::Model> for TokenView {
    fn from(t: api_token::Model) -> Self {
        TokenView {
            id: t.id,
            name: t.name,
            scope: t.scopes.into(),
            created_at: t.created_at,
            last_used_at: t.last_used_at,
            revoked_at: t.revoked_at,
        }
    }
}

fn validate_name(name: &str) -> AppResult<String> {
    let name = name.trim();
    if name.is_empty() || model::limits::line("name", "token name", name, model::limits::TOKEN_NAME).is_err()
    {
        return Err(AppError::invalid(
            "name",
            format!(
                "name the token (1 to {} printable characters), e.g. `laptop scripts`",
                model::limits::TOKEN_NAME
            ),
        ));
    }
    Ok(name.to_owned())
}

pub async fn list(db: &impl ConnectionTrait, caller: &Caller) -> AppResult<Vec<TokenView>> {
    Ok(api_token::Entity::find()
        .filter(api_token::Column::UserId.eq(caller.user_id))
        .order_by_asc(api_token::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}

/// Creates a token. Only a logged-in session may: a token can never create a token.
///
/// The limit holds under concurrency: the user's writers are serialised ([`lock_user`]) before the live
/// tokens are counted, and the count, the insert and the audit row are one transaction.
pub async fn create<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    clock: &Clock,
    caller: &Caller,
    name: &str,
    scope: Scope,
) -> AppResult<NewToken> {
    caller.require_session()?;
    let name = validate_name(name)?;
    let (secret, hash) = new_token();
    let now = clock.now();
    let txn = db.begin().await?;
    lock_user(&txn, caller.user_id).await?;
    let live = api_token::Entity::find()
        .filter(api_token::Column::UserId.eq(caller.user_id))
        .filter(api_token::Column::RevokedAt.is_null())
        .count(&txn)
        .await?;
    if live >= MAX_TOKENS_PER_USER {
        return Err(AppError::conflict(format!(
            "at most {MAX_TOKENS_PER_USER} live tokens; revoke one first"
        )));
    }
    let token = api_token::ActiveModel {
        user_id: Set(caller.user_id),
        name: Set(name),
        scopes: Set(scope.into()),
        token_hash: Set(hash),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    audit::record(
        &txn,
        now,
        Some(caller.user_id),
        "token.create",
        &token.id.to_string(),
        json!({ "scope": scope }),
    )
    .await?;
    txn.commit().await?;
    Ok(NewToken { token: token.into(), secret })
}

/// Revokes one of the caller's tokens; revoking a revoked token changes nothing (and records nothing).
pub async fn revoke<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    clock: &Clock,
    caller: &Caller,
    id: i32,
) -> AppResult<()> {
    caller.require_write()?;
    let now = clock.now();
    let txn = db.begin().await?;
    let revoked = api_token::Entity::update_many()
        .col_expr(api_token::Column::RevokedAt, Expr::value(Some(now)))
        .filter(api_token::Column::Id.eq(id))
        .filter(api_token::Column::UserId.eq(caller.user_id))
        .filter(api_token::Column::RevokedAt.is_null())
        .exec(&txn)
        .await?
        .rows_affected;
    if revoked == 0 {
        let exists = api_token::Entity::find_by_id(id)
            .filter(api_token::Column::UserId.eq(caller.user_id))
            .one(&txn)
            .await?
            .is_some();
        return if exists { Ok(()) } else { Err(AppError::not_found(format!("token {id}"))) };
    }
    audit::record(&txn, now, Some(caller.user_id), "token.revoke", &id.to_string(), json!({})).await?;
    txn.commit().await?;
    Ok(())
}
