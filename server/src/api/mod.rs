//! The REST API at `/api/v1`, for scripts. It calls the same service functions as the UI's server functions,
//! authenticates with a bearer token (or the browser's session), and answers errors as
//! `{ "error": { "code", "message", "field"? } }` through `AppError`'s one `IntoResponse`.

mod accounts;
mod extract;
mod keys;
mod liveness;
mod nodes;
mod projects;
mod tokens;

pub use extract::{ApiCaller, ApiJson, ApiPath};

use axum::{
    Json, Router,
    body::Body,
    extract::Request,
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::any,
};
use model::error::{AppError, ErrorCode};
use portolan_core::state::AppState;
use std::sync::OnceLock;
use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};
use utoipa_axum::{router::OpenApiRouter, routes};

/// The document's frame: title, the bearer scheme. Its paths come from [`routes`].
#[derive(OpenApi)]
#[openapi(
    info(title = "Portolan API", description = "Slices of a wide-area testbed, for scripts."),
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

/// Every route of the API, each registered from its handler's `#[utoipa::path]` (its method and path are
/// read from there), so that the router and the OpenAPI document are one list. Add routes here with
/// `routes!` only: a plain `.route(...)` would serve an undocumented path (the `every_route_is_documented`
/// test in `tests/http.rs` walks this list).
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(openapi))
        .routes(routes!(accounts::me))
        .routes(routes!(projects::list, projects::create))
        .routes(routes!(projects::get))
        .routes(routes!(projects::members))
        .routes(routes!(projects::join_requests, projects::ask_to_join))
        .routes(routes!(projects::approve))
        .routes(routes!(projects::reject))
        .routes(routes!(keys::list, keys::add))
        .routes(routes!(keys::delete))
        .routes(routes!(tokens::list, tokens::create))
        .routes(routes!(tokens::revoke))
        .routes(routes!(nodes::list))
        .routes(routes!(nodes::get))
        .routes(routes!(nodes::sites))
        .routes(routes!(nodes::get_admission, nodes::put_admission))
        .routes(routes!(nodes::what_if))
        .routes(routes!(nodes::runs))
        .routes(routes!(nodes::decisions))
        .routes(routes!(nodes::decide))
        .routes(routes!(liveness::metrics))
        .routes(routes!(liveness::pool_history))
        .routes(routes!(liveness::node_liveness))
        .routes(routes!(liveness::retest))
        .routes(routes!(liveness::queue))
        .routes(routes!(liveness::pools_history))
        .routes(routes!(liveness::provisioning))
}

/// The OpenAPI document, built once from [`routes`].
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOCUMENT: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOCUMENT.get_or_init(|| routes().into_openapi())
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json")))]
async fn openapi() -> Json<&'static utoipa::openapi::OpenApi> {
    Json(document())
}

/// The API's router, with every path under `/api/v1` (the handlers' paths are absolute). Whatever axum
/// itself would answer in plain text (an unknown path, a method the path does not answer, an extractor's
/// rejection, a layer's error) is answered in the JSON error shape instead.
pub fn router(state: AppState) -> Router {
    stateless_router().with_state(state)
}

/// [`router`] before it is given its state (the tests read its paths).
pub fn stateless_router() -> Router<AppState> {
    let (routes, _) = routes().split_for_parts();
    routes
        .route("/api/v1", any(unknown_route))
        .route("/api/v1/{*rest}", any(unknown_route))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(json_errors))
}

async fn unknown_route() -> AppError {
    AppError::not_found("API route")
}

pub(crate) async fn method_not_allowed() -> AppError {
    AppError::new(ErrorCode::MethodNotAllowed, "this path does not answer that method (see the Allow header)")
}

/// The safety net under every API answer: an error response that is not JSON (one axum or a layer made)
/// becomes the JSON error shape, with the same status and headers.
async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let detail = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let error = framework_error(status, &String::from_utf8_lossy(&detail));
    let fresh = error.into_response();
    parts.status = status;
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let (_, body) = fresh.into_parts();
    Response::from_parts(parts, Body::new(body))
}

/// An error status axum or a layer produced, as an `AppError` (its code chosen by the status).
pub(crate) fn framework_error(status: StatusCode, detail: &str) -> AppError {
    let code = match status {
        StatusCode::UNAUTHORIZED => ErrorCode::Unauthenticated,
        StatusCode::FORBIDDEN => ErrorCode::Forbidden,
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::CONFLICT => ErrorCode::Conflict,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::TooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
        StatusCode::TOO_MANY_REQUESTS => ErrorCode::TooManyRequests,
        StatusCode::SERVICE_UNAVAILABLE => ErrorCode::Unavailable,
        s if s.is_client_error() => ErrorCode::InvalidInput,
        _ => return AppError::internal(format!("{status}: {detail}")),
    };
    let detail = detail.trim();
    let message = if detail.is_empty() {
        status.canonical_reason().unwrap_or("request refused").to_lowercase()
    } else {
        detail.chars().take(300).collect()
    };
    AppError::new(code, message)
}
