use super::ApiCaller;
use axum::{Json, extract::State};
use model::{
    accounts::UserView,
    error::{AppError, ssr::ErrorBody},
};
use portolan_core::{accounts as service, state::AppState};

/// The caller's account.
#[utoipa::path(get, path = "/api/v1/me", tag = "accounts",
    responses((status = 200, body = UserView), (status = 401, body = ErrorBody)))]
pub async fn me(
    State(state): State<AppState>,
    ApiCaller(caller): ApiCaller,
) -> Result<Json<UserView>, AppError> {
    service::me(&state.db, &caller).await.map(Json)
}
