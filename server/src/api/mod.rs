//! The REST API at `/api/v1`, for scripts. It calls the same service functions as the UI's server functions,
//! authenticates with a bearer token (or the browser's session), and answers errors as
//! `{ "error": { "code", "message", "field"? } }` through `AppError`'s one `IntoResponse`.

mod accounts;
mod extract;
mod keys;
mod projects;
mod tokens;

pub use extract::{ApiCaller, ApiJson, ApiPath};

use axum::{Json, Router, routing::get};
use portolan_core::state::AppState;
use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};

#[derive(OpenApi)]
#[openapi(
    info(title = "Portolan API", description = "Slices of a wide-area testbed, for scripts."),
    paths(
        accounts::me,
        projects::list,
        projects::create,
        projects::get,
        projects::members,
        projects::join_requests,
        projects::ask_to_join,
        projects::approve,
        projects::reject,
        keys::list,
        keys::add,
        keys::delete,
        tokens::list,
        tokens::create,
        tokens::revoke,
    ),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
        .route("/me", get(accounts::me))
        .route("/projects", get(projects::list).post(projects::create))
        .route("/projects/{name}", get(projects::get))
        .route("/projects/{name}/members", get(projects::members))
        .route("/projects/{name}/join-requests", get(projects::join_requests).post(projects::ask_to_join))
        .route("/join-requests/{id}/approve", axum::routing::post(projects::approve))
        .route("/join-requests/{id}/reject", axum::routing::post(projects::reject))
        .route("/keys", get(keys::list).post(keys::add))
        .route("/keys/{id}", axum::routing::delete(keys::delete))
        .route("/tokens", get(tokens::list).post(tokens::create))
        .route("/tokens/{id}", axum::routing::delete(tokens::revoke))
        .fallback(|| async { model::error::AppError::not_found("API route") })
        .with_state(state)
}
