//! Accounts: register, log in, log out, who am I. Operators are made with `portolan admin`.

use crate::error::AppError;
use chrono::{DateTime, Utc};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

#[cfg(feature = "ssr")]
pub mod ssr;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct UserView {
    pub id: i32,
    pub email: String,
    pub name: String,
    pub is_operator: bool,
    pub created_at: DateTime<Utc>,
}

#[server(prefix = "/sf", endpoint = "register")]
pub async fn register(email: String, name: String, password: String) -> Result<UserView, AppError> {
    use crate::{auth, error::ssr::respond, state::request};
    respond(
        async {
            let state = request::state()?;
            let user = ssr::register(&state.db, &email, &name, &password).await?;
            auth::log_in(&request::session().await?, user.id).await?;
            leptos_axum::redirect("/");
            Ok(user)
        }
        .await,
    )
}

#[server(prefix = "/sf", endpoint = "login")]
pub async fn login(email: String, password: String) -> Result<UserView, AppError> {
    use crate::{auth, error::ssr::respond, state::request};
    respond(
        async {
            let state = request::state()?;
            let user = ssr::authenticate(&state.db, &email, &password).await?;
            auth::log_in(&request::session().await?, user.id).await?;
            leptos_axum::redirect("/");
            Ok(user)
        }
        .await,
    )
}

#[server(prefix = "/sf", endpoint = "logout")]
pub async fn logout() -> Result<(), AppError> {
    use crate::{audit, auth, error::ssr::respond, state::request};
    respond(
        async {
            let state = request::state()?;
            let session = request::session().await?;
            if let Some(caller) = auth::caller_from_session(&state.db, &session).await? {
                audit::record(&state.db, Some(caller.user_id), "logout", "", serde_json::json!({})).await?;
            }
            auth::log_out(&session).await?;
            leptos_axum::redirect("/login");
            Ok(())
        }
        .await,
    )
}

#[server(prefix = "/sf", endpoint = "current_user")]
pub async fn current_user() -> Result<Option<UserView>, AppError> {
    use crate::{error::ssr::respond, state::request};
    respond(
        async {
            let state = request::state()?;
            match request::optional_caller(&state).await? {
                Some(caller) => Ok(Some(ssr::me(&state.db, &caller).await?)),
                None => Ok(None),
            }
        }
        .await,
    )
}
