//! API tokens for scripts: created in the browser (shown once), listed, revoked. Stored only as a hash.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What an API token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub enum Scope {
    /// Read everything the owner can read.
    Read,
    /// Read and change everything the owner can (never create tokens).
    Write,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "read,write",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "read" => Some(Scope::Read),
            "write" | "read,write" => Some(Scope::Write),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct TokenView {
    pub id: i32,
    pub name: String,
    pub scope: Scope,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A token just created: the only time its secret is ever shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct NewToken {
    pub token: TokenView,
    /// The bearer secret. Portolan keeps only its hash: copy it now.
    pub secret: String,
}
