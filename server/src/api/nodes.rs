use super::{ApiCaller, ApiJson, ApiPath};
use axum::{
    Json,
    extract::{Query, State},
    http::StatusCode,
};
use model::{
    error::{AppError, ssr::ErrorBody},
    nodes::{
        AdmissionCounts, AdmissionView, Decision, DecisionView, DiscoveryRunView, NodeDetail, NodePage,
        NodeQuery, SiteView,
    },
};
use portolan_core::{
    nodes::{self as service, admission, require_operator},
    state::AppState,
};

/// How many discovery runs `GET /api/v1/discovery/runs` answers, newest first.
pub const RECENT_RUNS: u64 = 50;

/// A page of nodes matching the filters, with the counts per pool of everything the other filters match.
/// A malformed query (e.g. `limit=abc`) is `invalid_input`, as is an unknown class or pool or a limit
/// outside 1–1000.
#[utoipa::path(get, path = "/api/v1/nodes", tag = "nodes", params(NodeQuery),
    responses((status = 200, body = NodePage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    ApiCaller(_caller): ApiCaller,
    Query(query): Query<NodeQuery>,
) -> Result<Json<NodePage>, AppError> {
    service::list(&state.db, &query).await.map(Json)
}

/// One node with its identity history (newest first) and its nearest measured paths.
#[utoipa::path(get, path = "/api/v1/nodes/{id}", tag = "nodes", params(("id" = i64, Path)),
    responses((status = 200, body = NodeDetail), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    ApiCaller(_caller): ApiCaller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<NodeDetail>, AppError> {
    service::get(&state.db, id).await.map(Json)
}

/// Every site with its listed and allocatable nodes.
#[utoipa::path(get, path = "/api/v1/sites", tag = "nodes",
    responses((status = 200, body = Vec<SiteView>), (status = 401, body = ErrorBody)))]
pub async fn sites(
    State(state): State<AppState>,
    ApiCaller(_caller): ApiCaller,
) -> Result<Json<Vec<SiteView>>, AppError> {
    service::sites(&state.db).await.map(Json)
}

/// The admission thresholds in force.
#[utoipa::path(get, path = "/api/v1/admission", tag = "nodes",
    responses((status = 200, body = AdmissionView), (status = 401, body = ErrorBody)))]
pub async fn get_admission(
    State(state): State<AppState>,
    ApiCaller(_caller): ApiCaller,
) -> Result<Json<AdmissionView>, AppError> {
    admission::get(&state.db).await.map(Json)
}

/// Replaces the admission thresholds (operators, write scope). A bad value is `invalid_input` naming the
/// field, and changes nothing.
#[utoipa::path(put, path = "/api/v1/admission", tag = "nodes", request_body = AdmissionView,
    responses((status = 200, body = AdmissionView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn put_admission(
    State(state): State<AppState>,
    ApiCaller(caller): ApiCaller,
    ApiJson(body): ApiJson<AdmissionView>,
) -> Result<Json<AdmissionView>, AppError> {
    admission::put(&state.db, state.clock.now(), &caller, &body).await.map(Json)
}

/// How many nodes of each link class would pass these thresholds now, and why the others fail. Stores
/// nothing.
#[utoipa::path(post, path = "/api/v1/admission/what-if", tag = "nodes", request_body = AdmissionView,
    responses((status = 200, body = AdmissionCounts), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn what_if(
    State(state): State<AppState>,
    ApiCaller(_caller): ApiCaller,
    ApiJson(body): ApiJson<AdmissionView>,
) -> Result<Json<AdmissionCounts>, AppError> {
    admission::what_if(&state.db, state.clock.now(), &body).await.map(Json)
}

/// The latest discovery runs, newest first (operators).
#[utoipa::path(get, path = "/api/v1/discovery/runs", tag = "nodes",
    responses((status = 200, body = Vec<DiscoveryRunView>), (status = 403, body = ErrorBody)))]
pub async fn runs(
    State(state): State<AppState>,
    ApiCaller(caller): ApiCaller,
) -> Result<Json<Vec<DiscoveryRunView>>, AppError> {
    require_operator(&caller)?;
    service::runs(&state.db, RECENT_RUNS).await.map(Json)
}

/// Identity matches waiting for an operator, oldest first (operators).
#[utoipa::path(get, path = "/api/v1/identity-decisions", tag = "nodes",
    responses((status = 200, body = Vec<DecisionView>), (status = 403, body = ErrorBody)))]
pub async fn decisions(
    State(state): State<AppState>,
    ApiCaller(caller): ApiCaller,
) -> Result<Json<Vec<DecisionView>>, AppError> {
    require_operator(&caller)?;
    service::decisions(&state.db).await.map(Json)
}

/// Decides a pending identity match (operators, write scope): the record is a known candidate
/// (`{"decision": "accept", "node_id": …}`) or a new node (`{"decision": "new"}`).
#[utoipa::path(post, path = "/api/v1/identity-decisions/{id}", tag = "nodes", params(("id" = i64, Path)),
    request_body = Decision,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn decide(
    State(state): State<AppState>,
    ApiCaller(caller): ApiCaller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<Decision>,
) -> Result<StatusCode, AppError> {
    service::decide(&state.db, state.clock.now(), &caller, id, &body).await.map(|()| StatusCode::NO_CONTENT)
}
