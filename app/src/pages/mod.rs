//! The pages of the portal and the layout around them.

mod account;
mod chart;
mod dashboard;
mod nodes;
mod operators;
mod profile;
mod project;
mod widgets;

use crate::accounts::{Login, Logout, Register, UserView, current_user};
use crate::error::AppError;
use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::{
    SsrMode,
    components::{A, Route, Router, Routes},
    path,
};

/// The HTML document around the app, rendered on the server.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <link rel="icon" href="/favicon.svg" type="image/svg+xml"/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// Who is logged in, and the actions that change it. Provided once at the top, used by every page.
#[derive(Clone, Copy)]
pub struct Auth {
    pub login: ServerAction<Login>,
    pub logout: ServerAction<Logout>,
    pub register: ServerAction<Register>,
    pub user: Resource<Result<Option<UserView>, AppError>>,
}

impl Auth {
    /// A list of the logged-in user's, fetched again whenever `version` changes. Made in the page's own
    /// body, outside any `Suspend` (which re-runs as the user settles and would make and fetch it again);
    /// it waits for the user and asks the server nothing for a visitor.
    pub fn list_of<T, K, F, Fut>(
        self,
        version: impl Fn() -> K + Send + Sync + 'static,
        fetch: F,
    ) -> Resource<Result<Vec<T>, AppError>>
    where
        T: Clone + Send + Sync + serde::Serialize + serde::de::DeserializeOwned + 'static,
        K: PartialEq + Clone + Send + Sync + 'static,
        F: Fn() -> Fut + Copy + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Vec<T>, AppError>> + Send + 'static,
    {
        let user = self.user;
        Resource::new(version, move |_| async move {
            match user.await {
                Ok(Some(_)) => fetch().await,
                _ => Ok(Vec::new()),
            }
        })
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    let login = ServerAction::<Login>::new();
    let logout = ServerAction::<Logout>::new();
    let register = ServerAction::<Register>::new();
    let user = Resource::new(
        move || (login.version().get(), logout.version().get(), register.version().get()),
        |_| current_user(),
    );
    provide_context(Auth { login, logout, register, user });
    // Effects run only in the browser, after hydration: mark the page so tests (and curious people) can tell.
    Effect::new(|_| {
        if let Some(root) = document().document_element() {
            let _ = root.set_attribute("data-hydrated", "true");
        }
    });

    view! {
        <Stylesheet id="leptos" href="/pkg/portolan.css"/>
        <Title text="Portolan"/>
        // Pages render whole on the server (`Async`), so they work before hydration and without JavaScript.
        <Router>
            <Nav/>
            <main>
                <Routes fallback=|| view! { <h1>"Not found"</h1><p>"There is no page here."</p> }>
                    <Route path=path!("/") view=dashboard::DashboardPage ssr=SsrMode::Async/>
                    <Route path=path!("/login") view=account::LoginPage ssr=SsrMode::Async/>
                    <Route path=path!("/register") view=account::RegisterPage ssr=SsrMode::Async/>
                    <Route path=path!("/profile") view=profile::ProfilePage ssr=SsrMode::Async/>
                    <Route path=path!("/projects/:name") view=project::ProjectPage ssr=SsrMode::Async/>
                    <Route path=path!("/nodes") view=nodes::NodesPage ssr=SsrMode::Async/>
                    <Route path=path!("/nodes/:id") view=nodes::NodePage ssr=SsrMode::Async/>
                    <Route path=path!("/sites") view=nodes::SitesPage ssr=SsrMode::Async/>
                    <Route path=path!("/operators") view=operators::OperatorsPage ssr=SsrMode::Async/>
                </Routes>
            </main>
        </Router>
    }
}

#[component]
fn Nav() -> impl IntoView {
    let auth = expect_context::<Auth>();
    view! {
        <header class="top">
            <A href="/" attr:class="brand">"Portolan"</A>
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    match auth.user.await {
                        Ok(Some(user)) => view! {
                            <nav>
                                <A href="/">"Projects"</A>
                                <A href="/nodes">"Nodes"</A>
                                <A href="/sites">"Sites"</A>
                                {user.is_operator.then(|| view! { <A href="/operators">"Operators"</A> })}
                                <A href="/profile">"Profile"</A>
                                <span class="who" data-testid="who">{user.name}</span>
                                <ActionForm action=auth.logout attr:class="inline">
                                    <button type="submit" class="link">"Log out"</button>
                                </ActionForm>
                            </nav>
                        }.into_any(),
                        _ => view! {
                            <nav>
                                <A href="/login">"Log in"</A>
                                <A href="/register">"Register"</A>
                            </nav>
                        }.into_any(),
                    }
                })}
            </Transition>
        </header>
    }
}
