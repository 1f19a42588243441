//! Accounts: register, log in, log out, who am I. Operators are made with `portolan admin`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct UserView {
    pub id: i32,
    pub email: String,
    pub name: String,
    pub is_operator: bool,
    pub created_at: DateTime<Utc>,
}
