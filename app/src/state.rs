//! What server functions and API handlers share: the database and the settings they need, and the helpers
//! that fetch them (and the caller) inside a server function.

use sea_orm::DatabaseConnection;

/// Shared by every request. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    pub db: DatabaseConnection,
}

/// Inside a server function: the state, the session and the caller.
pub mod request {
    use super::AppState;
    use crate::auth::{self, Caller};
    use crate::error::{AppError, AppResult};
    use leptos::prelude::use_context;
    use tower_sessions::Session;

    pub fn state() -> AppResult<AppState> {
        use_context::<AppState>().ok_or_else(|| AppError::internal("AppState missing from context"))
    }

    pub async fn session() -> AppResult<Session> {
        leptos_axum::extract::<Session>()
            .await
            .map_err(|e| AppError::internal(format!("no session layer: {e:?}")))
    }

    /// The logged-in caller of a server function; `unauthenticated` when nobody is logged in.
    pub async fn caller(state: &AppState) -> AppResult<Caller> {
        optional_caller(state).await?.ok_or_else(AppError::unauthenticated)
    }

    pub async fn optional_caller(state: &AppState) -> AppResult<Option<Caller>> {
        auth::caller_from_session(&state.db, &session().await?).await
    }
}
