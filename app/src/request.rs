//! Inside a server function: the state, the session and the caller, and how a server function answers an
//! error. Server-only (the `ssr` feature); the services themselves live in `portolan_core`.

use leptos::prelude::use_context;
use model::error::{AppError, AppResult};
use portolan_core::{
    auth::{self, Caller},
    state::AppState,
};
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

/// Finishes a server function: on error, sets the HTTP status that the error's code maps to, except
/// for a plain form post (a browser without JavaScript, which accepts HTML): that one is answered with
/// a redirect back to the form carrying the error in its URL, and a browser follows no redirect whose
/// status is 4xx.
pub fn respond<T>(result: Result<T, AppError>) -> Result<T, AppError> {
    if let Err(err) = &result
        && let Some(options) = use_context::<leptos_axum::ResponseOptions>()
        && !plain_form_post()
    {
        options.set_status(err.code.status());
    }
    result
}

fn plain_form_post() -> bool {
    use_context::<http::request::Parts>().is_some_and(|parts| {
        parts
            .headers
            .get(http::header::ACCEPT)
            .and_then(|accept| accept.to_str().ok())
            .is_some_and(|accept| accept.contains("text/html"))
    })
}

/// The body of a server function on behalf of the logged-in caller: binds the state and the caller, runs
/// `$body`, and on error sets the HTTP status that the error's code maps to.
///
/// ```text
/// for_caller!(|state, caller| projects::list(&state.db, &caller))
/// ```
#[macro_export]
macro_rules! for_caller {
    (|$state:ident, $caller:ident| $body:expr) => {{
        use $crate::request;
        request::respond(
            async {
                let $state = request::state()?;
                let $caller = request::caller(&$state).await?;
                $body.await
            }
            .await,
        )
    }};
}
