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

/// The body of a server function on behalf of the logged-in caller: binds the database and the caller, runs
/// `$body`, and on error sets the HTTP status that the error's code maps to.
///
/// ```text
/// for_caller!(|db, caller| ssr::list(db, &caller))
/// ```
#[macro_export]
macro_rules! for_caller {
    (|$db:ident, $caller:ident| $body:expr) => {{
        use $crate::{error::ssr::respond, state::request};
        respond(
            async {
                let state = request::state()?;
                let $caller = request::caller(&state).await?;
                let $db = &state.db;
                $body.await
            }
            .await,
        )
    }};
}
