//! Extractors whose rejections are `AppError`s, so that every API error has the same JSON shape.

use axum::{
    Json,
    extract::{FromRequest, FromRequestParts, Path, Request, rejection::JsonRejection},
    http::{StatusCode, request::Parts},
};
use model::error::{AppError, ErrorCode};
use portolan_core::{
    auth::{self, Caller},
    state::AppState,
};
use serde::de::DeserializeOwned;
use tower_sessions::Session;

/// The authenticated caller: bearer token, else the browser session.
pub struct ApiCaller(pub Caller);

impl FromRequestParts<AppState> for ApiCaller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let session = parts.extensions.get::<Session>().cloned();
        auth::caller(&state.db, &state.clock, &parts.headers, session.as_ref()).await.map(ApiCaller)
    }
}

/// A JSON body; one without a JSON content type is `unsupported_media_type` (415, as a server function
/// given no form is), malformed or oversized bodies are `invalid_input` or `too_large`, with serde's
/// explanation.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_error(rejection)),
        }
    }
}

fn json_error(rejection: JsonRejection) -> AppError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return AppError::new(ErrorCode::TooLarge, "the request body is too large");
    }
    match rejection {
        JsonRejection::MissingJsonContentType(_) => AppError::new(
            ErrorCode::UnsupportedMediaType,
            "send the body as JSON with Content-Type: application/json",
        ),
        other => AppError::bad_request(format!("invalid JSON body: {}", other.body_text())),
    }
}

/// A path parameter; a malformed one (e.g. `/keys/abc`) is `invalid_input`.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|e| AppError::bad_request(format!("invalid path: {}", e.body_text())))
    }
}
