//! Inside a server function: the state, the session and the caller, and how a server function answers an
//! error. Server-only (the `ssr` feature); the services themselves live in `portolan_core`.

use leptos::prelude::{Owner, provide_context, use_context};
use leptos_axum::{ResponseOptions, ResponseParts};
use model::{
    accounts::UserView,
    error::{AppError, AppResult},
};
use portolan_core::{
    auth::{self, Caller},
    state::AppState,
};
use std::sync::{Arc, RwLock, Weak};
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

/// The logged-in caller, if any, read once per request (see [`optional_user`]).
pub async fn optional_caller(state: &AppState) -> AppResult<Option<Caller>> {
    Ok(optional_user(state).await?.map(|(caller, _)| caller))
}

/// The logged-in caller and their account, if any, read once per request: a page renders several
/// resources, each a server function asking for the caller, and they share the first one's answer (keyed
/// by the session's user, so a log-in or log-out within the request is seen). Errors are not kept: the next
/// call tries again.
pub async fn optional_user(state: &AppState) -> AppResult<Option<(Caller, UserView)>> {
    let session = session().await?;
    let Some(cache) = CallerCache::of_this_request() else {
        return auth::session_user(&state.db, &session).await;
    };
    // The session's record is loaded once per request by the session layer; this reads it from memory.
    let user_id: Option<i32> = session.get(auth::SESSION_USER_KEY).await.map_err(AppError::internal)?;
    // Held across the lookup, so that resources asking at once wait for one query instead of each making it.
    let mut known = cache.known.lock().await;
    if let Some((for_user, caller)) = known.as_ref()
        && *for_user == user_id
    {
        return Ok(caller.clone());
    }
    let caller = auth::session_user(&state.db, &session).await?;
    *known = Some((user_id, caller.clone()));
    Ok(caller)
}

/// The caller as first read in this request (for the session's user id then).
#[derive(Clone)]
struct CallerCache {
    /// The request it belongs to (its `ResponseOptions`, one per request).
    request: Weak<RwLock<ResponseParts>>,
    known: Arc<tokio::sync::Mutex<Option<Known>>>,
}

/// The session's user id when the caller was read, and the caller then.
type Known = (Option<i32>, Option<(Caller, UserView)>);

impl CallerCache {
    /// This request's cache, provided on first use at the highest reactive owner of this request.
    ///
    /// The request is told by its `ResponseOptions` (leptos_axum provides one per request, page or server
    /// function). Walking up the owners stops where that changes: a server function's owner may have been
    /// created under an owner of another request that last ran on the same thread (leptos_axum's
    /// `Owner::new()` takes the thread's current owner as parent), and a cache found there is not ours.
    fn of_this_request() -> Option<Self> {
        let mut owner = Owner::current()?;
        let response = owner.with(use_context::<ResponseOptions>)?;
        let same_request =
            |options: Option<ResponseOptions>| options.is_some_and(|o| Arc::ptr_eq(&o.0, &response.0));
        while let Some(parent) = owner.parent() {
            if !same_request(parent.with(use_context::<ResponseOptions>)) {
                break;
            }
            owner = parent;
        }
        let request = Arc::downgrade(&response.0);
        if let Some(cache) = owner.with(use_context::<Self>)
            && Weak::ptr_eq(&cache.request, &request)
        {
            return Some(cache);
        }
        let cache = Self { request, known: Arc::default() };
        owner.with(|| provide_context(cache.clone()));
        Some(cache)
    }
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
