//! The landing page: a welcome for visitors, the caller's projects for users.

use super::{
    Auth,
    widgets::{ActionError, Listing, LoadError, when},
};
use crate::accounts::UserView;
use crate::error::AppError;
use crate::projects::{
    CreateProject, JoinRequestView, ProjectView, RequestJoin, RequestStatus, list_projects, my_join_requests,
    validate_name,
};
use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn DashboardPage() -> impl IntoView {
    let auth = expect_context::<Auth>();
    // Made here, once per page, not inside the Suspend below (see `Auth::list_of`).
    let create = ServerAction::<CreateProject>::new();
    let join = ServerAction::<RequestJoin>::new();
    let projects = auth.list_of(move || create.version().get(), list_projects);
    let requests = auth.list_of(move || join.version().get(), my_join_requests);
    let lists = Lists { create, join, projects, requests };
    view! {
        <Title text="Portolan"/>
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match auth.user.await {
                    Ok(Some(user)) => view! { <Dashboard user lists/> }.into_any(),
                    Ok(None) => view! { <Welcome/> }.into_any(),
                    Err(error) => view! { <LoadError error/> }.into_any(),
                }
            })}
        </Transition>
    }
}

/// The dashboard's actions and the lists they change.
#[derive(Clone, Copy)]
struct Lists {
    create: ServerAction<CreateProject>,
    join: ServerAction<RequestJoin>,
    projects: Resource<Result<Vec<ProjectView>, AppError>>,
    requests: Resource<Result<Vec<JoinRequestView>, AppError>>,
}

#[component]
fn Welcome() -> impl IntoView {
    view! {
        <section class="card">
            <h1>"Portolan"</h1>
            <p>
                "Slices of a wide-area testbed for your experiments: design a topology, and Portolan maps it "
                "onto measured nodes and paths, sets up every sliver and keeps it alive."
            </p>
            <p><a class="button" href="/register">"Register"</a> " " <a href="/login">"Log in"</a></p>
        </section>
    }
}

#[component]
fn Dashboard(user: UserView, lists: Lists) -> impl IntoView {
    let Lists { create, join, projects, requests } = lists;
    let heading = if user.is_operator { "All projects (operator)" } else { "Your projects" };
    view! {
        <section class="card">
            <h1>{heading}</h1>
            <Listing
                items=projects
                empty="No projects yet: start one or ask to join one."
                test_id="projects"
                columns=&["Project", "Your role", "Description"]
                row=|p: ProjectView| view! {
                    <tr>
                        <td><a href=format!("/projects/{}", p.name)>{p.name.clone()}</a></td>
                        <td>{p.my_role.map_or("—", |r| r.as_str())}</td>
                        <td>{p.description}</td>
                    </tr>
                }
            />
        </section>
        <div class="columns">
            <NewProject create/>
            <JoinProject join requests/>
        </div>
    }
}

/// The create-project form. The name check runs in the browser as you type (only once hydrated), and
/// again on the server.
#[component]
fn NewProject(create: ServerAction<CreateProject>) -> impl IntoView {
    let name = RwSignal::new(String::new());
    let check = move || {
        let name = name.get();
        if name.is_empty() {
            return ("hint", "3 to 32 characters: a–z, 0–9 and _, starting with a letter".to_owned());
        }
        match validate_name(&name) {
            Ok(()) => ("hint ok", format!("✓ {name} is a valid project name")),
            Err(err) => ("hint bad", err.message),
        }
    };
    view! {
        <section class="card">
            <h2>"Start a project"</h2>
            <ActionForm action=create>
                <label>"Name" <input type="text" name="name" required bind:value=name/></label>
                <p class=move || check().0 data-testid="name-check">{move || check().1}</p>
                <label>"Description" <textarea name="description" rows="2" maxlength=model::limits::PROJECT_DESCRIPTION></textarea></label>
                <button type="submit">"Create project"</button>
            </ActionForm>
            <ActionError value=create.value()/>
        </section>
    }
}

#[component]
fn JoinProject(
    join: ServerAction<RequestJoin>,
    requests: Resource<Result<Vec<JoinRequestView>, AppError>>,
) -> impl IntoView {
    view! {
        <section class="card">
            <h2>"Join a project"</h2>
            <ActionForm action=join>
                <label>"Project name" <input type="text" name="project" required/></label>
                <label>"Message to the leaders" <textarea name="message" rows="2" maxlength=model::limits::JOIN_MESSAGE></textarea></label>
                <button type="submit">"Ask to join"</button>
            </ActionForm>
            <ActionError value=join.value()/>
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    let list = requests.await.unwrap_or_default();
                    (!list.is_empty()).then(|| view! {
                        <h3>"Your requests"</h3>
                        <ul>
                            {list.into_iter().map(|r| {
                                let status = match r.status {
                                    RequestStatus::Pending => "pending",
                                    RequestStatus::Approved => "approved",
                                    RequestStatus::Rejected => "rejected",
                                };
                                view! { <li>{r.project} " — " {status} " (" {when(r.created_at)} ")"</li> }
                            }).collect_view()}
                        </ul>
                    })
                })}
            </Transition>
        </section>
    }
}
