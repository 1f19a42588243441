//! The caller's profile: SSH keys and API tokens.

use super::{
    Auth,
    widgets::{ActionError, Listing, LoadError, PleaseLogIn, when},
};
use crate::error::AppError;
use crate::keys::{AddKey, DeleteKey, KeyView, list_keys};
use crate::tokens::{CreateToken, RevokeToken, TokenView, list_tokens};
use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn ProfilePage() -> impl IntoView {
    let auth = expect_context::<Auth>();
    // Made here, once per page, not inside the Suspend below (see `Auth::list_of`).
    let add = ServerAction::<AddKey>::new();
    let delete = ServerAction::<DeleteKey>::new();
    let keys = auth.list_of(move || (add.version().get(), delete.version().get()), list_keys);
    let create = ServerAction::<CreateToken>::new();
    let revoke = ServerAction::<RevokeToken>::new();
    let tokens = auth.list_of(move || (create.version().get(), revoke.version().get()), list_tokens);
    view! {
        <Title text="Profile · Portolan"/>
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match auth.user.await {
                    Ok(Some(user)) => view! {
                        <section class="card">
                            <h1>{user.name}</h1>
                            <p class="muted">{user.email} {user.is_operator.then_some(" · operator")}</p>
                        </section>
                        <Keys add delete keys/>
                        <Tokens create revoke tokens/>
                    }.into_any(),
                    Ok(None) => view! { <PleaseLogIn/> }.into_any(),
                    Err(error) => view! { <LoadError error/> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn Keys(
    add: ServerAction<AddKey>,
    delete: ServerAction<DeleteKey>,
    keys: Resource<Result<Vec<KeyView>, AppError>>,
) -> impl IntoView {
    view! {
        <section class="card">
            <h2>"SSH keys"</h2>
            <p class="muted">"Installed in every sliver of your projects' experiments."</p>
            <Listing
                items=keys
                empty="No keys yet."
                test_id="keys"
                columns=&["Type", "Fingerprint", "Comment", "Added", ""]
                row=move |k: KeyView| view! {
                    <tr>
                        <td>{k.algorithm}</td>
                        <td><code>{k.fingerprint}</code></td>
                        <td>{k.comment}</td>
                        <td>{when(k.created_at)}</td>
                        <td>
                            <ActionForm action=delete attr:class="inline">
                                <input type="hidden" name="id" value=k.id/>
                                <button type="submit" class="secondary">"Delete"</button>
                            </ActionForm>
                        </td>
                    </tr>
                }
            />
            <ActionForm action=add>
                <label>"Public key"
                    <textarea name="public_key" rows="3" required placeholder="ssh-ed25519 AAAA… you@laptop"></textarea>
                </label>
                <button type="submit">"Add key"</button>
            </ActionForm>
            <ActionError value=add.value()/>
        </section>
    }
}

#[component]
fn Tokens(
    create: ServerAction<CreateToken>,
    revoke: ServerAction<RevokeToken>,
    tokens: Resource<Result<Vec<TokenView>, AppError>>,
) -> impl IntoView {
    let fresh = move || {
        create.value().get().and_then(Result::ok).map(|new| {
            view! {
                <div class="notice" data-testid="new-token">
                    <p>"Your new token " <strong>{new.token.name}</strong> ". Copy it now: it is not shown again."</p>
                    <code class="secret">{new.secret}</code>
                </div>
            }
        })
    };
    view! {
        <section class="card">
            <h2>"API tokens"</h2>
            <p class="muted">"For scripts: send " <code>"Authorization: Bearer <token>"</code> " to " <code>"/api/v1"</code> "."</p>
            {fresh}
            <Listing
                items=tokens
                empty="No tokens yet."
                test_id="tokens"
                columns=&["Name", "Scope", "Created", "Last used", ""]
                row=move |t: TokenView| view! {
                    <tr>
                        <td>{t.name}</td>
                        <td>{t.scope.as_str()}</td>
                        <td>{when(t.created_at)}</td>
                        <td>{t.last_used_at.map_or_else(|| "never".to_owned(), when)}</td>
                        <td>
                            {match t.revoked_at {
                                Some(at) => view! { <span class="muted">"revoked " {when(at)}</span> }.into_any(),
                                None => view! {
                                    <ActionForm action=revoke attr:class="inline">
                                        <input type="hidden" name="id" value=t.id/>
                                        <button type="submit" class="secondary">"Revoke"</button>
                                    </ActionForm>
                                }.into_any(),
                            }}
                        </td>
                    </tr>
                }
            />
            <ActionForm action=create>
                <label>"Name" <input type="text" name="name" required maxlength=model::limits::TOKEN_NAME placeholder="laptop scripts"/></label>
                <label>"Scope"
                    <select name="scope">
                        <option value="read">"read"</option>
                        <option value="write">"read and write"</option>
                    </select>
                </label>
                <button type="submit">"Create token"</button>
            </ActionForm>
            <ActionError value=create.value()/>
        </section>
    }
}
