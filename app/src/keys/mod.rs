//! SSH public keys of a user: what later issues install in every sliver the user can reach.

use crate::error::AppError;
use chrono::{DateTime, Utc};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

#[cfg(feature = "ssr")]
pub mod ssr;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct KeyView {
    pub id: i32,
    pub algorithm: String,
    pub comment: String,
    /// `SHA256:…`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    pub public_key: String,
    pub created_at: DateTime<Utc>,
}

#[server(prefix = "/sf", endpoint = "list_keys")]
pub async fn list_keys() -> Result<Vec<KeyView>, AppError> {
    use crate::{error::ssr::respond, state::request};
    respond(
        async {
            let state = request::state()?;
            let caller = request::caller(&state).await?;
            ssr::list(&state.db, &caller).await
        }
        .await,
    )
}

#[server(prefix = "/sf", endpoint = "add_key")]
pub async fn add_key(public_key: String) -> Result<KeyView, AppError> {
    use crate::{error::ssr::respond, state::request};
    respond(
        async {
            let state = request::state()?;
            let caller = request::caller(&state).await?;
            ssr::add(&state.db, &caller, &public_key).await
        }
        .await,
    )
}

#[server(prefix = "/sf", endpoint = "delete_key")]
pub async fn delete_key(id: i32) -> Result<(), AppError> {
    use crate::{error::ssr::respond, state::request};
    respond(
        async {
            let state = request::state()?;
            let caller = request::caller(&state).await?;
            ssr::delete(&state.db, &caller, id).await
        }
        .await,
    )
}
