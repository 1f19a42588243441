use super::{ApiCaller, ApiJson, ApiPath};
use axum::{Json, extract::State, http::StatusCode};
use model::{
    error::{AppError, ssr::ErrorBody},
    tokens::{NewToken, Scope, TokenView},
};
use portolan_core::{state::AppState, tokens as service};
use serde::Deserialize;

#[derive(Deserialize, utoipa::ToSchema)]
pub struct TokenRequest {
    name: String,
    scope: Scope,
}

/// The caller's API tokens (never their secrets).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens",
    responses((status = 200, body = Vec<TokenView>), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    ApiCaller(caller): ApiCaller,
) -> Result<Json<Vec<TokenView>>, AppError> {
    service::list(&state.db, &caller).await.map(Json)
}

/// Creates a token. Needs a browser session: a token can never create a token.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = TokenRequest,
    responses((status = 201, body = NewToken), (status = 403, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    ApiCaller(caller): ApiCaller,
    ApiJson(body): ApiJson<TokenRequest>,
) -> Result<(StatusCode, Json<NewToken>), AppError> {
    service::create(&state.db, &state.clock, &caller, &body.name, body.scope)
        .await
        .map(|t| (StatusCode::CREATED, Json(t)))
}

/// Revokes a token; revoking a revoked token is a no-op.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens", params(("id" = i32, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn revoke(
    State(state): State<AppState>,
    ApiCaller(caller): ApiCaller,
    ApiPath(id): ApiPath<i32>,
) -> Result<StatusCode, AppError> {
    service::revoke(&state.db, &state.clock, &caller, id).await.map(|()| StatusCode::NO_CONTENT)
}
