//! The HTTP application: Leptos pages and server functions, the REST API, static files, and the layers every
//! request passes (sessions, CSRF check, body limit, security headers, tracing).

use crate::{api, config::Config, csrf};
use app::{App, shell};
use axum::{
    Router,
    body::Body,
    extract::{DefaultBodyLimit, Request},
    http::{HeaderName, HeaderValue},
    routing::post,
};
use leptos::prelude::*;
use leptos_axum::{AxumRouteListing, LeptosRoutes, generate_route_list, handle_server_fns_with_context};
use portolan_core::{db::session_store::DbSessionStore, state::AppState};
use std::sync::OnceLock;
use tower_http::{set_header::SetResponseHeaderLayer, trace::TraceLayer};
use tower_sessions::{Expiry, SessionManagerLayer, cookie::SameSite};

/// The largest request body accepted anywhere (keys and topologies are far smaller).
pub const MAX_BODY: usize = 256 * 1024;

pub fn leptos_options(config: &Config) -> LeptosOptions {
    LeptosOptions::builder()
        .output_name("portolan")
        .site_root(config.site_root.to_string_lossy().into_owned())
        .site_pkg_dir("pkg")
        .site_addr(config.listen)
        .build()
}

/// Builds the whole application around `state`.
pub fn router(state: AppState, config: &Config) -> Router {
    let options = leptos_options(config);
    let routes = route_list();
    let context = {
        let state = state.clone();
        move || provide_context(state.clone())
    };
    let server_fns = {
        let context = context.clone();
        move |request: Request<Body>| {
            let context = context.clone();
            async move { handle_server_fns_with_context(context, request).await }
        }
    };
    let site = Router::new()
        .route("/sf/{*fn_name}", post(server_fns))
        .leptos_routes_with_context(&options, routes, context.clone(), {
            let options = options.clone();
            move || shell(options.clone())
        })
        // Unknown paths render the app's "not found" page, which needs the same context as every page.
        .fallback(leptos_axum::file_and_error_handler_with_context(context, shell))
        .with_state(options);

    let sessions = SessionManagerLayer::new(DbSessionStore::new(state.db.clone()))
        .with_name("portolan_session")
        .with_secure(config.secure_cookies())
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_expiry(Expiry::OnInactivity(time::Duration::days(i64::from(config.session_days))));

    Router::new()
        .nest("/api/v1", api::router(state))
        .merge(site)
        .layer(axum::middleware::from_fn(csrf::check))
        .layer(sessions)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(header("x-content-type-options", "nosniff"))
        .layer(header("x-frame-options", "DENY"))
        .layer(header("referrer-policy", "same-origin"))
        .layer(TraceLayer::new_for_http())
}

/// The app's routes, generated once per process. Generating them runs the app with resource loading
/// suppressed process-wide, so a page rendered meanwhile by another router in the same process (tests
/// build one per test, in parallel) would wait forever on its first resource (leptos-rs/leptos#4773;
/// seen here as a hung integration test).
fn route_list() -> Vec<AxumRouteListing> {
    static ROUTES: OnceLock<Vec<AxumRouteListing>> = OnceLock::new();
    ROUTES.get_or_init(|| generate_route_list(App)).clone()
}

fn header(name: &'static str, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(HeaderName::from_static(name), HeaderValue::from_static(value))
}
