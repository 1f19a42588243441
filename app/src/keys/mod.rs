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
    crate::for_caller!(|db, caller| ssr::list(db, &caller))
}

#[server(prefix = "/sf", endpoint = "add_key")]
pub async fn add_key(public_key: String) -> Result<KeyView, AppError> {
    crate::for_caller!(|db, caller| ssr::add(db, &caller, &public_key))
}

#[server(prefix = "/sf", endpoint = "delete_key")]
pub async fn delete_key(id: i32) -> Result<(), AppError> {
    crate::for_caller!(|db, caller| ssr::delete(db, &caller, id))
}
