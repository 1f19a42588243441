//! Log in and register.

use super::{Auth, widgets::ActionError};
use crate::accounts::{Login, Register};
use leptos::prelude::*;
use leptos_meta::Title;
use server_fn::ServerFn;

#[component]
pub fn LoginPage() -> impl IntoView {
    let auth = expect_context::<Auth>();
    view! {
        <Title text="Log in · Portolan"/>
        <section class="card narrow">
            <h1>"Log in"</h1>
            <ActionForm action=auth.login>
                <label>"Email" <input type="email" name="email" required autocomplete="username"/></label>
                <label>"Password" <input type="password" name="password" required autocomplete="current-password"/></label>
                <button type="submit">"Log in"</button>
            </ActionForm>
            <ActionError value=auth.login.value() server_fn=Login::PATH/>
            <p class="muted">"No account yet? " <a href="/register">"Register"</a></p>
        </section>
    }
}

#[component]
pub fn RegisterPage() -> impl IntoView {
    let auth = expect_context::<Auth>();
    view! {
        <Title text="Register · Portolan"/>
        <section class="card narrow">
            <h1>"Register"</h1>
            <ActionForm action=auth.register>
                <label>"Email" <input type="email" name="email" required autocomplete="username"/></label>
                <label>"Name" <input type="text" name="name" required maxlength=model::limits::USER_NAME autocomplete="name"/></label>
                <label>"Password (at least 10 characters)"
                    <input type="password" name="password" required minlength="10" autocomplete="new-password"/>
                </label>
                <button type="submit">"Create account"</button>
            </ActionForm>
            <ActionError value=auth.register.value() server_fn=Register::PATH/>
        </section>
    }
}
