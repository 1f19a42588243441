//! SSH public keys of a user: what later issues install in every sliver the user can reach.

use crate::error::AppError;
use leptos::prelude::*;

pub use model::keys::*;

#[server(prefix = "/sf", endpoint = "list_keys")]
pub async fn list_keys() -> Result<Vec<KeyView>, AppError> {
    crate::for_caller!(|state, caller| portolan_core::keys::list(&state.db, &caller))
}

#[server(prefix = "/sf", endpoint = "add_key")]
pub async fn add_key(public_key: String) -> Result<KeyView, AppError> {
    crate::for_caller!(|state, caller| portolan_core::keys::add(
        &state.db,
        &state.clock,
        &caller,
        &public_key
    ))
}

#[server(prefix = "/sf", endpoint = "delete_key")]
pub async fn delete_key(id: i32) -> Result<(), AppError> {
    crate::for_caller!(|state, caller| portolan_core::keys::delete(&state.db, &state.clock, &caller, id))
}
