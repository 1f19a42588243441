use super::{ApiCaller, ApiJson, ApiPath};
use axum::{Json, extract::State, http::StatusCode};
use model::{
    error::{AppError, ssr::ErrorBody},
    keys::KeyView,
};
use portolan_core::{keys as service, state::AppState};
use serde::Deserialize;

#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewKey {
    /// One OpenSSH public key line, e.g. `ssh-ed25519 AAAA… you@laptop`.
    public_key: String,
}

/// The caller's SSH keys.
#[utoipa::path(get, path = "/api/v1/keys", tag = "keys",
    responses((status = 200, body = Vec<KeyView>), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    ApiCaller(caller): ApiCaller,
) -> Result<Json<Vec<KeyView>>, AppError> {
    service::list(&state.db, &caller).await.map(Json)
}

/// Adds an SSH public key.
#[utoipa::path(post, path = "/api/v1/keys", tag = "keys", request_body = NewKey,
    responses((status = 201, body = KeyView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn add(
    State(state): State<AppState>,
    ApiCaller(caller): ApiCaller,
    ApiJson(body): ApiJson<NewKey>,
) -> Result<(StatusCode, Json<KeyView>), AppError> {
    service::add(&state.db, &state.clock, &caller, &body.public_key)
        .await
        .map(|k| (StatusCode::CREATED, Json(k)))
}

/// Deletes one of the caller's keys.
#[utoipa::path(delete, path = "/api/v1/keys/{id}", tag = "keys", params(("id" = i32, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    ApiCaller(caller): ApiCaller,
    ApiPath(id): ApiPath<i32>,
) -> Result<StatusCode, AppError> {
    service::delete(&state.db, &state.clock, &caller, id).await.map(|()| StatusCode::NO_CONTENT)
}
