//! One project: its members and, for leaders, the pending join requests.

use super::widgets::{ActionError, LoadError, when};
use crate::projects::{DecideJoin, ProjectDetail, Role, get_project};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

#[component]
pub fn ProjectPage() -> impl IntoView {
    let params = use_params_map();
    let decide = ServerAction::<DecideJoin>::new();
    let detail = Resource::new(
        move || (params.read().get("name").unwrap_or_default(), decide.version().get()),
        |(name, _)| get_project(name),
    );
    view! {
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match detail.await {
                    Ok(detail) => view! { <Project detail decide/> }.into_any(),
                    Err(error) => view! { <LoadError error/> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn Project(detail: ProjectDetail, decide: ServerAction<DecideJoin>) -> impl IntoView {
    let ProjectDetail { project, members, requests } = detail;
    let leader = project.my_role == Some(Role::Leader);
    view! {
        <Title text=format!("{} · Portolan", project.name)/>
        <section class="card">
            <h1>{project.name.clone()}</h1>
            <p>{project.description.clone()}</p>
            <p class="muted">"Created " {when(project.created_at)}</p>
        </section>
        <section class="card">
            <h2>"Members"</h2>
            <table data-testid="members">
                <thead><tr><th>"Name"</th><th>"Email"</th><th>"Role"</th><th>"Since"</th></tr></thead>
                <tbody>
                    {members.into_iter().map(|m| view! {
                        <tr><td>{m.name}</td><td>{m.email}</td><td>{m.role.as_str()}</td><td>{when(m.joined_at)}</td></tr>
                    }).collect_view()}
                </tbody>
            </table>
        </section>
        {(leader || !requests.is_empty()).then(|| view! {
            <section class="card">
                <h2>"Join requests"</h2>
                {requests.is_empty().then(|| view! { <p class="muted">"None pending."</p> })}
                <ul class="requests" data-testid="requests">
                    {requests.into_iter().map(|r| view! {
                        <li>
                            <strong>{r.user_name}</strong> " <" {r.user_email} "> " <em>{r.message}</em>
                            <ActionForm action=decide attr:class="inline">
                                <input type="hidden" name="id" value=r.id/>
                                <input type="hidden" name="decision" value="approve"/>
                                <button type="submit">"Approve"</button>
                            </ActionForm>
                            <ActionForm action=decide attr:class="inline">
                                <input type="hidden" name="id" value=r.id/>
                                <input type="hidden" name="decision" value="reject"/>
                                <button type="submit" class="secondary">"Reject"</button>
                            </ActionForm>
                        </li>
                    }).collect_view()}
                </ul>
                <ActionError value=decide.value()/>
            </section>
        })}
    }
}
