//! Storage of API tokens. Every SQL statement about tokens is here.

use crate::audit;
use crate::auth::{Caller, new_token};
use crate::db::entity::api_token;
use crate::error::{AppError, AppResult};
use model::tokens::Scope;
use model::tokens::{NewToken, TokenView};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    Set,
};
use serde_json::json;

pub const MAX_TOKENS_PER_USER: u64 = 100;

impl From<api_token::Model> for TokenView {
    fn from(t: api_token::Model) -> Self {
        TokenView {
            id: t.id,
            name: t.name,
            scope: Scope::parse(&t.scopes).unwrap_or(Scope::Read),
            created_at: t.created_at,
            last_used_at: t.last_used_at,
            revoked_at: t.revoked_at,
        }
    }
}

fn validate_name(name: &str) -> AppResult<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(AppError::invalid(
            "name",
            "name the token (1 to 100 printable characters), e.g. `laptop scripts`",
        ));
    }
    Ok(name.to_owned())
}

pub async fn list(db: &DatabaseConnection, caller: &Caller) -> AppResult<Vec<TokenView>> {
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
pub async fn create(
    db: &DatabaseConnection,
    caller: &Caller,
    name: &str,
    scope: Scope,
) -> AppResult<NewToken> {
    caller.require_session()?;
    let name = validate_name(name)?;
    let live = api_token::Entity::find()
        .filter(api_token::Column::UserId.eq(caller.user_id))
        .filter(api_token::Column::RevokedAt.is_null())
        .count(db)
        .await?;
    if live >= MAX_TOKENS_PER_USER {
        return Err(AppError::conflict(format!(
            "at most {MAX_TOKENS_PER_USER} live tokens; revoke one first"
        )));
    }
    let (secret, hash) = new_token();
    let token = api_token::ActiveModel {
        user_id: Set(caller.user_id),
        name: Set(name),
        scopes: Set(scope.as_str().to_owned()),
        token_hash: Set(hash),
        created_at: Set(chrono::Utc::now()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    audit::record(db, Some(caller.user_id), "token.create", &token.id.to_string(), json!({ "scope": scope }))
        .await?;
    Ok(NewToken { token: token.into(), secret })
}

pub async fn revoke(db: &DatabaseConnection, caller: &Caller, id: i32) -> AppResult<()> {
    caller.require_write()?;
    let token = api_token::Entity::find_by_id(id)
        .filter(api_token::Column::UserId.eq(caller.user_id))
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found(format!("token {id}")))?;
    if token.revoked_at.is_some() {
        return Ok(());
    }
    let mut active: api_token::ActiveModel = token.into();
    active.revoked_at = Set(Some(chrono::Utc::now()));
    active.update(db).await?;
    audit::record(db, Some(caller.user_id), "token.revoke", &id.to_string(), json!({})).await?;
    Ok(())
}
