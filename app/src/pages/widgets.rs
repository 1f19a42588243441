//! Small pieces used by several pages.

use crate::error::AppError;
use leptos::prelude::*;

/// Shows the error of the last submission of an action, if any.
#[component]
pub fn ActionError<T, V>(value: V) -> impl IntoView
where
    T: Clone + Send + Sync + 'static,
    V: Get<Value = Option<Result<T, AppError>>> + Send + Sync + 'static,
{
    move || match value.get() {
        Some(Err(err)) => Some(view! { <p class="error" role="alert">{err.message}</p> }),
        _ => None,
    }
}

/// What a page shows when the caller is not logged in.
#[component]
pub fn PleaseLogIn() -> impl IntoView {
    view! {
        <section class="card">
            <p>"Please " <a href="/login">"log in"</a> " or " <a href="/register">"register"</a> " first."</p>
        </section>
    }
}

/// A failed load: "not found" and friends, or a log-in prompt when the session is gone.
#[component]
pub fn LoadError(error: AppError) -> impl IntoView {
    if error.code == crate::error::ErrorCode::Unauthenticated {
        view! { <PleaseLogIn/> }.into_any()
    } else {
        view! { <p class="error" role="alert">{error.message}</p> }.into_any()
    }
}

pub fn when(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}
