//! Projects: a user starts one (and leads it) or asks to join one; leaders approve members. Every later
//! resource (experiments, slices) belongs to a project, and every query is scoped to the caller's projects.

use crate::error::AppError;
use leptos::prelude::*;

pub use model::projects::*;

#[server(prefix = "/sf", endpoint = "list_projects")]
pub async fn list_projects() -> Result<Vec<ProjectView>, AppError> {
    crate::for_caller!(|state, caller| portolan_core::projects::list(&state.db, &caller))
}

#[server(prefix = "/sf", endpoint = "create_project")]
pub async fn create_project(name: String, description: String) -> Result<ProjectView, AppError> {
    crate::for_caller!(|state, caller| portolan_core::projects::create(
        &state.db,
        &state.clock,
        &caller,
        &name,
        &description
    ))
}

#[server(prefix = "/sf", endpoint = "get_project")]
pub async fn get_project(name: String) -> Result<ProjectDetail, AppError> {
    crate::for_caller!(|state, caller| portolan_core::projects::detail(&state.db, &caller, &name))
}

#[server(prefix = "/sf", endpoint = "request_join")]
pub async fn request_join(project: String, message: String) -> Result<JoinRequestView, AppError> {
    crate::for_caller!(|state, caller| portolan_core::projects::request_join(
        &state.db,
        &state.clock,
        &caller,
        &project,
        &message
    ))
}

#[server(prefix = "/sf", endpoint = "my_join_requests")]
pub async fn my_join_requests() -> Result<Vec<JoinRequestView>, AppError> {
    crate::for_caller!(|state, caller| portolan_core::projects::my_requests(&state.db, &caller))
}

/// `decision` is `approve` or `reject`.
#[server(prefix = "/sf", endpoint = "decide_join")]
pub async fn decide_join(id: i32, decision: String) -> Result<JoinRequestView, AppError> {
    crate::for_caller!(|state, caller| async {
        let approve = match decision.as_str() {
            "approve" => true,
            "reject" => false,
            _ => {
                return Err(AppError::invalid("decision", "decision is `approve` or `reject`"));
            }
        };
        portolan_core::projects::decide(&state.db, &state.clock, &caller, id, approve).await
    })
}
