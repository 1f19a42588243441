use super::ApiCaller;
use app::{
    accounts::{UserView, ssr},
    error::{AppError, ssr::ErrorBody},
    state::AppState,
};
use axum::{Json, extract::State};

/// The caller's account.
#[utoipa::path(get, path = "/api/v1/me", tag = "accounts",
    responses((status = 200, body = UserView), (status = 401, body = ErrorBody)))]
pub async fn me(
    State(state): State<AppState>,
    ApiCaller(caller): ApiCaller,
) -> Result<Json<UserView>, AppError> {
    ssr::me(&state.db, &caller).await.map(Json)
}
