//! API tokens for scripts: created in the browser (shown once), listed, revoked. Stored only as a hash.

use crate::auth::Scope;
use crate::error::AppError;
use chrono::{DateTime, Utc};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

#[cfg(feature = "ssr")]
pub mod ssr;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct TokenView {
    pub id: i32,
    pub name: String,
    pub scope: Scope,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A token just created: the only time its secret is ever shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct NewToken {
    pub token: TokenView,
    /// The bearer secret. Portolan keeps only its hash: copy it now.
    pub secret: String,
}

#[server(prefix = "/sf", endpoint = "list_tokens")]
pub async fn list_tokens() -> Result<Vec<TokenView>, AppError> {
    crate::for_caller!(|db, caller| ssr::list(db, &caller))
}

#[server(prefix = "/sf", endpoint = "create_token")]
pub async fn create_token(name: String, scope: String) -> Result<NewToken, AppError> {
    crate::for_caller!(|db, caller| async {
        let scope =
            Scope::parse(&scope).ok_or_else(|| AppError::invalid("scope", "scope is `read` or `write`"))?;
        ssr::create(db, &caller, &name, scope).await
    })
}

#[server(prefix = "/sf", endpoint = "revoke_token")]
pub async fn revoke_token(id: i32) -> Result<(), AppError> {
    crate::for_caller!(|db, caller| ssr::revoke(db, &caller, id))
}
