//! Projects: a user starts one (and leads it) or asks to join one; leaders approve members. Every later
//! resource (experiments, slices) belongs to a project, and every query is scoped to the caller's projects.

use crate::error::AppError;
use chrono::{DateTime, Utc};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

#[cfg(feature = "ssr")]
pub mod ssr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub enum Role {
    Leader,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Member => "member",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "leader" => Some(Role::Leader),
            "member" => Some(Role::Member),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ProjectView {
    pub id: i32,
    pub name: String,
    pub description: String,
    pub created_at: DateTime<Utc>,
    /// The caller's role; `None` for an operator looking at a project that is not theirs.
    pub my_role: Option<Role>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct MemberView {
    pub user_id: i32,
    pub name: String,
    pub email: String,
    pub role: Role,
    pub joined_at: DateTime<Utc>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub enum RequestStatus {
    Pending,
    Approved,
    Rejected,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct JoinRequestView {
    pub id: i32,
    pub project: String,
    pub user_id: i32,
    pub user_name: String,
    pub user_email: String,
    pub message: String,
    pub status: RequestStatus,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ProjectDetail {
    pub project: ProjectView,
    pub members: Vec<MemberView>,
    /// Pending join requests; only leaders and operators see them.
    pub requests: Vec<JoinRequestView>,
}

/// Project names end up in testbed slice names (`<site>_<name>`), so they follow PLC's rules.
pub fn validate_name(name: &str) -> Result<(), AppError> {
    let ok = (3..=32).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(AppError::invalid(
            "name",
            "a project name has 3 to 32 characters: lower-case letters, digits and `_`, starting with a letter",
        ))
    }
}

#[server(prefix = "/sf", endpoint = "list_projects")]
pub async fn list_projects() -> Result<Vec<ProjectView>, AppError> {
    crate::for_caller!(|db, caller| ssr::list(db, &caller))
}

#[server(prefix = "/sf", endpoint = "create_project")]
pub async fn create_project(name: String, description: String) -> Result<ProjectView, AppError> {
    crate::for_caller!(|db, caller| ssr::create(db, &caller, &name, &description))
}

#[server(prefix = "/sf", endpoint = "get_project")]
pub async fn get_project(name: String) -> Result<ProjectDetail, AppError> {
    crate::for_caller!(|db, caller| ssr::detail(db, &caller, &name))
}

#[server(prefix = "/sf", endpoint = "request_join")]
pub async fn request_join(project: String, message: String) -> Result<JoinRequestView, AppError> {
    crate::for_caller!(|db, caller| ssr::request_join(db, &caller, &project, &message))
}

#[server(prefix = "/sf", endpoint = "my_join_requests")]
pub async fn my_join_requests() -> Result<Vec<JoinRequestView>, AppError> {
    crate::for_caller!(|db, caller| ssr::my_requests(db, &caller))
}

/// `decision` is `approve` or `reject`.
#[server(prefix = "/sf", endpoint = "decide_join")]
pub async fn decide_join(id: i32, decision: String) -> Result<JoinRequestView, AppError> {
    crate::for_caller!(|db, caller| async {
        let approve = match decision.as_str() {
            "approve" => true,
            "reject" => false,
            _ => {
                return Err(AppError::invalid("decision", "decision is `approve` or `reject`"));
            }
        };
        ssr::decide(db, &caller, id, approve).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plc_style_names_pass() {
        for good in ["wanlab", "dns_study", "p2p", "a".repeat(32).as_str()] {
            validate_name(good).unwrap();
        }
    }

    #[test]
    fn names_that_would_break_slice_names_are_refused() {
        for bad in ["ab", "Caps", "9lives", "has space", "semi;colon", "x".repeat(33).as_str(), "dash-ed"] {
            let err = validate_name(bad).unwrap_err();
            assert_eq!(err.field.as_deref(), Some("name"), "{bad}");
        }
    }
}
