//! Small pieces used by several pages.

use crate::error::AppError;
use leptos::prelude::*;
use server_fn::error::ServerFnUrlError;

/// Shows the error of the last submission of an action, if any.
///
/// Without JavaScript a failed form submission comes back as a redirect to the form's page whose URL
/// carries the error (`__path`, `__err`). Actions created inside the router read it when created; the ones
/// created above it (log in, register, in `App`) cannot, so their pages pass the server function's path
/// as `server_fn` and the error is read here.
#[component]
pub fn ActionError<T, V>(value: V, #[prop(optional)] server_fn: Option<&'static str>) -> impl IntoView
where
    T: Clone + Send + Sync + 'static,
    V: Get<Value = Option<Result<T, AppError>>> + Send + Sync + 'static,
{
    let from_url = server_fn.and_then(|path| {
        use_context::<leptos::server::ServerActionError>()
            .filter(|error| error.path() == path)
            .map(|error| ServerFnUrlError::<AppError>::decode_err(error.err()).message)
    });
    move || {
        let message = match value.get() {
            Some(Err(err)) => Some(err.message),
            Some(Ok(_)) => None,
            None => from_url.clone(),
        };
        message.map(|message| view! { <p class="error" role="alert">{message}</p> })
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

/// A list loaded from the server, shown as a table: "Loading…" while it loads, `empty` when there is nothing,
/// a [`LoadError`] when loading failed, otherwise a table with `columns` as headings and one `row` per item.
/// Every listing page (projects, keys, tokens; nodes and experiments later) uses it.
#[component]
pub fn Listing<T, R, V>(
    items: Resource<Result<Vec<T>, AppError>>,
    /// Shown when the list is empty.
    empty: &'static str,
    /// The table's `data-testid`.
    test_id: &'static str,
    columns: &'static [&'static str],
    /// One table row (`<tr>…</tr>`) per item.
    row: R,
) -> impl IntoView
where
    T: Clone + Send + Sync + serde::Serialize + serde::de::DeserializeOwned + 'static,
    R: Fn(T) -> V + Clone + Send + Sync + 'static,
    V: IntoView + 'static,
{
    view! {
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || {
                let row = row.clone();
                Suspend::new(async move {
                    match items.await {
                        Ok(items) => view! { <Table items empty test_id columns row/> }.into_any(),
                        Err(error) => view! { <LoadError error/> }.into_any(),
                    }
                })
            }}
        </Transition>
    }
}

/// A list already loaded, shown as a table (or `empty` when there is nothing): what [`Listing`] shows once
/// loaded, for pages whose list comes inside a larger answer (a page of nodes, a node's paths).
#[component]
pub fn Table<T, R, V>(
    items: Vec<T>,
    /// Shown when the list is empty.
    empty: &'static str,
    /// The table's `data-testid`.
    test_id: &'static str,
    columns: &'static [&'static str],
    /// One table row (`<tr>…</tr>`) per item.
    row: R,
) -> impl IntoView
where
    T: Send + Sync + 'static,
    R: Fn(T) -> V + Send + Sync + 'static,
    V: IntoView + 'static,
{
    if items.is_empty() {
        view! { <p class="muted">{empty}</p> }.into_any()
    } else {
        view! {
            <table data-testid=test_id>
                <thead><tr>{columns.iter().map(|c| view! { <th>{*c}</th> }).collect_view()}</tr></thead>
                <tbody>{items.into_iter().map(row).collect_view()}</tbody>
            </table>
        }
        .into_any()
    }
}

pub fn when(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// A share as a percentage ("—" when there is nothing to take a share of: an empty window, no attempts).
pub fn percent(share: Option<f64>) -> String {
    share.map_or_else(|| "—".to_owned(), |s| format!("{:.1} %", s * 100.0))
}

/// A duration given in seconds, in the unit that reads best ("—" when unknown).
pub fn seconds(s: Option<f64>) -> String {
    match s {
        None => "—".to_owned(),
        Some(s) if s < 60.0 => format!("{s:.1} s"),
        Some(s) if s < 3600.0 => format!("{:.1} min", s / 60.0),
        Some(s) if s < 2.0 * 86_400.0 => format!("{:.1} h", s / 3600.0),
        Some(s) => format!("{:.1} d", s / 86_400.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_and_durations_read_in_their_best_unit() {
        assert_eq!(percent(Some(0.75)), "75.0 %");
        assert_eq!(percent(None), "—");
        assert_eq!(seconds(Some(12.34)), "12.3 s");
        assert_eq!(seconds(Some(150.0)), "2.5 min");
        assert_eq!(seconds(Some(41.0 * 3600.0)), "41.0 h");
        assert_eq!(seconds(Some(3.0 * 86_400.0)), "3.0 d");
        assert_eq!(seconds(None), "—");
    }
}
