//! The one error type of Portolan's service layer, shared by the browser and the server.
//!
//! Every failure a caller can see is an [`AppError`]: a stable machine-readable [`ErrorCode`], a message meant
//! for people, and, for bad input, the field it is about. The server turns it into an HTTP response in exactly
//! one place (`impl IntoResponse` below, used by the REST API and, through [`ssr::respond`], by server
//! functions). Unexpected failures become `internal` with a generic message; their detail goes only to the log.

use serde::{Deserialize, Serialize};
use server_fn::{
    codec::JsonEncoding,
    error::{FromServerFnError, ServerFnErrorErr},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub enum ErrorCode {
    /// The request is malformed or a field is invalid (400).
    InvalidInput,
    /// No valid session or token (401).
    Unauthenticated,
    /// Authenticated, but not allowed (403).
    Forbidden,
    /// No such thing, or not visible to the caller (404).
    NotFound,
    /// The request conflicts with what is stored, e.g. a duplicate name (409).
    Conflict,
    /// The method is not one the path answers (405).
    MethodNotAllowed,
    /// The body is larger than allowed (413).
    TooLarge,
    /// The body's content type is not one the endpoint reads (415).
    UnsupportedMediaType,
    /// Too many attempts (429): wait as long as `Retry-After` says.
    TooManyRequests,
    /// A dependency is overloaded, e.g. the database pool is exhausted (503).
    Unavailable,
    /// Anything unexpected (500); details are in the server log only.
    Internal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct AppError {
    pub code: ErrorCode,
    pub message: String,
    /// For `invalid_input`: the name of the offending field, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For `too_many_requests`: seconds until a retry may succeed (also sent as `Retry-After`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<u64>,
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), field: None, retry_after_s: None }
    }

    /// Bad input in one named field.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self { field: Some(field.to_owned()), ..Self::new(ErrorCode::InvalidInput, message) }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidInput, message)
    }

    pub fn unauthenticated() -> Self {
        Self::new(ErrorCode::Unauthenticated, "log in or present a valid API token")
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }

    /// Too many attempts; a retry after `retry_after_s` seconds may succeed.
    pub fn too_many(message: impl Into<String>, retry_after_s: u64) -> Self {
        Self { retry_after_s: Some(retry_after_s), ..Self::new(ErrorCode::TooManyRequests, message) }
    }

    /// An unexpected failure: the detail is logged (on the server) and never sent to the client.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        #[cfg(feature = "ssr")]
        tracing::error!(detail = %detail, "internal error");
        #[cfg(not(feature = "ssr"))]
        let _ = detail;
        Self::new(ErrorCode::Internal, "internal error")
    }
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        match value {
            ServerFnErrorErr::Args(m) => Self::bad_request(format!("bad arguments: {m}")),
            ServerFnErrorErr::MissingArg(m) => Self::bad_request(format!("missing argument {m}")),
            // On the server this is a request body that cannot be read as arguments (not UTF-8); in
            // the browser it is an answer that cannot be read, which stays `internal`.
            #[cfg(feature = "ssr")]
            ServerFnErrorErr::Deserialization(m) => Self::bad_request(format!("unreadable arguments: {m}")),
            ServerFnErrorErr::UnsupportedRequestMethod(m) => Self::new(ErrorCode::MethodNotAllowed, m),
            ServerFnErrorErr::Request(m) => {
                Self::new(ErrorCode::Unavailable, format!("could not reach the server: {m}"))
            }
            other => Self::internal(other),
        }
    }

    /// Reads a server function's error: the `AppError` object server functions answer, or the API's
    /// `{"error": …}` shape that the layers in front of them (CSRF check, in-flight limit) answer.
    fn de(data: server_fn::Bytes) -> Self {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Shape {
            Bare(AppError),
            Wrapped { error: AppError },
        }
        match serde_json::from_slice::<Shape>(&data) {
            Ok(Shape::Bare(error) | Shape::Wrapped { error }) => error,
            Err(e) => Self::from_server_fn_error(ServerFnErrorErr::Deserialization(e.to_string())),
        }
    }
}

#[cfg(feature = "ssr")]
pub mod ssr {
    use super::{AppError, ErrorCode};
    use axum::{
        Json,
        http::StatusCode,
        response::{IntoResponse, Response},
    };
    use sea_orm::DbErr;

    impl ErrorCode {
        pub fn status(self) -> StatusCode {
            match self {
                ErrorCode::InvalidInput => StatusCode::BAD_REQUEST,
                ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
                ErrorCode::Forbidden => StatusCode::FORBIDDEN,
                ErrorCode::NotFound => StatusCode::NOT_FOUND,
                ErrorCode::Conflict => StatusCode::CONFLICT,
                ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
                ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            }
        }
    }

    impl From<DbErr> for AppError {
        fn from(err: DbErr) -> Self {
            match err {
                DbErr::ConnectionAcquire(e) => {
                    tracing::warn!(error = %e, "database pool exhausted");
                    AppError::new(ErrorCode::Unavailable, "the database is busy; try again shortly")
                }
                other => AppError::internal(other),
            }
        }
    }

    /// The JSON body of every error: `{ "error": { "code", "message", "field"? } }`.
    #[derive(serde::Serialize, utoipa::ToSchema)]
    pub struct ErrorBody {
        pub error: AppError,
    }

    impl IntoResponse for AppError {
        fn into_response(self) -> Response {
            let retry_after = self
                .retry_after_s
                .map(|s| (axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(s)));
            (
                self.code.status(),
                retry_after.into_iter().collect::<axum::http::HeaderMap>(),
                Json(ErrorBody { error: self }),
            )
                .into_response()
        }
    }
}
