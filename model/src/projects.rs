//! Projects: a user starts one (and leads it) or asks to join one; leaders approve members. Every later
//! resource (experiments, slices) belongs to a project, and every query is scoped to the caller's projects.

use crate::error::AppError;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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
    // ASCII only, so bytes are characters.
    let ok = (3..=crate::limits::PROJECT_NAME).contains(&name.len())
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
