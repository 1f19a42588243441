//! The agents' endpoints, `/agent/v1/…`: apart from the REST API and the pages, and outside their session
//! and CSRF layers, because only slivers call them and only with a sliver credential (`Authorization:
//! Bearer pslv_…`; a session or an API token is no credential here).
//!
//! - `GET /agent/v1/manifest`: the caller's manifest;
//! - `POST /agent/v1/heartbeat`: a heartbeat (JSON, at most [`MAX_HEARTBEAT_BYTES`]), answered with the
//!   manifest's version and the interval;
//! - `GET` / `HEAD /agent/v1/portolan/{sha256}`: the agent binary, named by its checksum (which the answer
//!   repeats in `x-content-sha256` and the `ETag`); not secret, so not authenticated.
//!
//! Errors are the API's JSON (`{ "error": … }`): 401 for a missing or invalid credential, 403 for a
//! heartbeat about another slice or node, 400 for malformed or implausible values, 413 for an oversized body.

use crate::api::ApiJson;
use axum::{
    Json, Router,
    body::Body,
    extract::{DefaultBodyLimit, Path, State},
    http::{HeaderMap, HeaderValue, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use model::error::{AppError, ErrorCode};
use portolan_agent::protocol::{Heartbeat, HeartbeatReply, MAX_HEARTBEAT_BYTES, Manifest};
use portolan_core::slivers::agent_api::{AgentApi, SliverAuth};
use portolan_core::state::AppState;
use std::sync::Arc;

/// The agents' router (empty when the state has no agent API).
pub fn router(state: &AppState) -> Router {
    let Some(agents) = state.agents.clone() else { return Router::new() };
    Router::new()
        .route("/agent/v1/manifest", get(manifest))
        .route("/agent/v1/heartbeat", post(heartbeat))
        .route("/agent/v1/portolan/{sha256}", get(binary))
        .layer(DefaultBodyLimit::max(MAX_HEARTBEAT_BYTES))
        .with_state(agents)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

async fn caller(agents: &AgentApi, headers: &HeaderMap) -> Result<Arc<SliverAuth>, AppError> {
    let credential = bearer(headers).ok_or_else(|| {
        AppError::new(ErrorCode::Unauthenticated, "present a sliver credential as a bearer token")
    })?;
    agents.authenticate(credential).await
}

async fn manifest(
    State(agents): State<Arc<AgentApi>>,
    headers: HeaderMap,
) -> Result<Json<Manifest>, AppError> {
    let auth = caller(&agents, &headers).await?;
    Ok(Json(agents.manifest(&auth).await?.as_ref().clone()))
}

async fn heartbeat(
    State(agents): State<Arc<AgentApi>>,
    headers: HeaderMap,
    ApiJson(beat): ApiJson<Heartbeat>,
) -> Result<Json<HeartbeatReply>, AppError> {
    let auth = caller(&agents, &headers).await?;
    Ok(Json(agents.heartbeat(&auth, beat).await?))
}

async fn binary(
    State(agents): State<Arc<AgentApi>>,
    Path(sha256): Path<String>,
) -> Result<Response, AppError> {
    let artifact = agents.settings().artifact.as_ref().filter(|a| a.sha256 == sha256);
    let Some(artifact) = artifact else { return Err(AppError::not_found(format!("agent binary {sha256}"))) };
    let file = tokio::fs::File::open(&artifact.path).await.map_err(AppError::internal)?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(artifact.bytes));
    if let Ok(value) = HeaderValue::from_str(&artifact.sha256) {
        headers.insert("x-content-sha256", value);
    }
    if let Ok(value) = HeaderValue::from_str(&format!("\"{}\"", artifact.sha256)) {
        headers.insert(header::ETAG, value);
    }
    Ok(response)
}
