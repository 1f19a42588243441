//! Accounts: register, log in, log out, who am I. Operators are made with `portolan admin`.

use crate::error::AppError;
use leptos::prelude::*;

pub use model::accounts::*;

/// The address of the client a request comes from, for per-client limits: a request extension the server
/// sets (the peer, or behind a trusted proxy the client it names; `server::web::client_address`).
#[cfg(feature = "ssr")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub std::net::IpAddr);

/// This request's client address, if the server set one (per-client throttling of log-ins and
/// registrations: the peer, or behind a trusted proxy the client it forwarded for).
#[cfg(feature = "ssr")]
fn client_addr() -> Option<std::net::IpAddr> {
    use_context::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<ClientAddr>().copied())
        .map(|ClientAddr(ip)| ip)
}

/// A throttled log-in or registration says when to retry, as the API's 429s do (`Retry-After`).
#[cfg(feature = "ssr")]
fn retry_after(error: &AppError) {
    if let Some(s) = error.retry_after_s
        && let Some(options) = use_context::<leptos_axum::ResponseOptions>()
    {
        options.insert_header(http::header::RETRY_AFTER, http::HeaderValue::from(s));
    }
}

#[server(prefix = "/sf", endpoint = "register")]
pub async fn register(email: String, name: String, password: String) -> Result<UserView, AppError> {
    use crate::request::{self, respond};
    use portolan_core::{accounts, auth};
    respond(
        async {
            let state = request::state()?;
            let user = accounts::register(&state.db, &state.clock, &email, &name, &password, client_addr())
                .await
                .inspect_err(retry_after)?;
            auth::log_in(&request::session().await?, user.id).await?;
            leptos_axum::redirect("/");
            Ok(user)
        }
        .await,
    )
}

#[server(prefix = "/sf", endpoint = "login")]
pub async fn login(email: String, password: String) -> Result<UserView, AppError> {
    use crate::request::{self, respond};
    use portolan_core::{accounts, auth};
    respond(
        async {
            let state = request::state()?;
            let user = accounts::authenticate(&state.db, &state.clock, &email, &password, client_addr())
                .await
                .inspect_err(retry_after)?;
            auth::log_in(&request::session().await?, user.id).await?;
            leptos_axum::redirect("/");
            Ok(user)
        }
        .await,
    )
}

#[server(prefix = "/sf", endpoint = "logout")]
pub async fn logout() -> Result<(), AppError> {
    use crate::request::{self, respond};
    use portolan_core::{audit, auth};
    respond(
        async {
            let state = request::state()?;
            let session = request::session().await?;
            if let Some(caller) = auth::caller_from_session(&state.db, &session).await? {
                audit::record(
                    &state.db,
                    state.clock.now(),
                    Some(caller.user_id),
                    "logout",
                    "",
                    serde_json::json!({}),
                )
                .await?;
            }
            auth::log_out(&session).await?;
            leptos_axum::redirect("/login");
            Ok(())
        }
        .await,
    )
}

#[server(prefix = "/sf", endpoint = "current_user")]
pub async fn current_user() -> Result<Option<UserView>, AppError> {
    use crate::request::{self, respond};
    respond(
        async {
            let state = request::state()?;
            Ok(request::optional_user(&state).await?.map(|(_, user)| user))
        }
        .await,
    )
}
