use super::{ApiCaller, ApiJson, ApiPath};
use axum::{Json, extract::State, http::StatusCode};
use model::{
    error::{AppError, ssr::ErrorBody},
    projects::{JoinRequestView, MemberView, ProjectDetail, ProjectView},
};
use portolan_core::{projects as service, state::AppState};
use serde::Deserialize;

#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewProject {
    /// 3 to 32 characters: a–z, 0–9 and `_`, starting with a letter.
    name: String,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct JoinRequest {
    #[serde(default)]
    message: String,
}

/// The caller's projects (every project for operators).
#[utoipa::path(get, path = "/api/v1/projects", tag = "projects",
    responses((status = 200, body = Vec<ProjectView>), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    ApiCaller(caller): ApiCaller,
) -> Result<Json<Vec<ProjectView>>, AppError> {
    service::list(&state.db, &caller).await.map(Json)
}

/// Starts a project led by the caller.
#[utoipa::path(post, path = "/api/v1/projects", tag = "projects", request_body = NewProject,
    responses((status = 201, body = ProjectView), (status = 400, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    ApiCaller(caller): ApiCaller,
    ApiJson(body): ApiJson<NewProject>,
) -> Result<(StatusCode, Json<ProjectView>), AppError> {
    service::create(&state.db, &state.clock, &caller, &body.name, &body.description)
        .await
        .map(|p| (StatusCode::CREATED, Json(p)))
}

/// One project with its members (and, for leaders, pending join requests).
#[utoipa::path(get, path = "/api/v1/projects/{name}", tag = "projects", params(("name" = String, Path)),
    responses((status = 200, body = ProjectDetail), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    ApiCaller(caller): ApiCaller,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<ProjectDetail>, AppError> {
    service::detail(&state.db, &caller, &name).await.map(Json)
}

/// A project's members.
#[utoipa::path(get, path = "/api/v1/projects/{name}/members", tag = "projects", params(("name" = String, Path)),
    responses((status = 200, body = Vec<MemberView>), (status = 404, body = ErrorBody)))]
pub async fn members(
    State(state): State<AppState>,
    ApiCaller(caller): ApiCaller,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Vec<MemberView>>, AppError> {
    service::members(&state.db, &caller, &name).await.map(Json)
}

/// Pending join requests of a project (leaders and operators).
#[utoipa::path(get, path = "/api/v1/projects/{name}/join-requests", tag = "projects", params(("name" = String, Path)),
    responses((status = 200, body = Vec<JoinRequestView>), (status = 403, body = ErrorBody)))]
pub async fn join_requests(
    State(state): State<AppState>,
    ApiCaller(caller): ApiCaller,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Vec<JoinRequestView>>, AppError> {
    service::pending_requests(&state.db, &caller, &name).await.map(Json)
}

/// Asks to join a project.
#[utoipa::path(post, path = "/api/v1/projects/{name}/join-requests", tag = "projects",
    params(("name" = String, Path)), request_body = JoinRequest,
    responses((status = 201, body = JoinRequestView), (status = 409, body = ErrorBody)))]
pub async fn ask_to_join(
    State(state): State<AppState>,
    ApiCaller(caller): ApiCaller,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<JoinRequest>,
) -> Result<(StatusCode, Json<JoinRequestView>), AppError> {
    service::request_join(&state.db, &state.clock, &caller, &name, &body.message)
        .await
        .map(|r| (StatusCode::CREATED, Json(r)))
}

/// Approves a join request (project leaders and operators).
#[utoipa::path(post, path = "/api/v1/join-requests/{id}/approve", tag = "projects", params(("id" = i32, Path)),
    responses((status = 200, body = JoinRequestView), (status = 404, body = ErrorBody)))]
pub async fn approve(
    State(state): State<AppState>,
    ApiCaller(caller): ApiCaller,
    ApiPath(id): ApiPath<i32>,
) -> Result<Json<JoinRequestView>, AppError> {
    service::decide(&state.db, &state.clock, &caller, id, true).await.map(Json)
}

/// Rejects a join request (project leaders and operators).
#[utoipa::path(post, path = "/api/v1/join-requests/{id}/reject", tag = "projects", params(("id" = i32, Path)),
    responses((status = 200, body = JoinRequestView), (status = 404, body = ErrorBody)))]
pub async fn reject(
    State(state): State<AppState>,
    ApiCaller(caller): ApiCaller,
    ApiPath(id): ApiPath<i32>,
) -> Result<Json<JoinRequestView>, AppError> {
    service::decide(&state.db, &state.clock, &caller, id, false).await.map(Json)
}
