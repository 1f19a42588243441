//! API tokens for scripts: created in the browser (shown once), listed, revoked. Stored only as a hash.

use crate::error::AppError;
use leptos::prelude::*;

pub use model::tokens::*;

#[server(prefix = "/sf", endpoint = "list_tokens")]
pub async fn list_tokens() -> Result<Vec<TokenView>, AppError> {
    crate::for_caller!(|state, caller| portolan_core::tokens::list(&state.db, &caller))
}

#[server(prefix = "/sf", endpoint = "create_token")]
pub async fn create_token(name: String, scope: String) -> Result<NewToken, AppError> {
    crate::for_caller!(|state, caller| async {
        let scope =
            Scope::parse(&scope).ok_or_else(|| AppError::invalid("scope", "scope is `read` or `write`"))?;
        portolan_core::tokens::create(&state.db, &state.clock, &caller, &name, scope).await
    })
}

#[server(prefix = "/sf", endpoint = "revoke_token")]
pub async fn revoke_token(id: i32) -> Result<(), AppError> {
    crate::for_caller!(|state, caller| portolan_core::tokens::revoke(&state.db, &state.clock, &caller, id))
}
