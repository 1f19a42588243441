//! SSH keys and API tokens.

mod common;

use common::TestApp;
use reqwest::{Client, Method, StatusCode};
use serde_json::json;

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPI+DjeFyvcJhwoBHObkxNxeuORd3QSsOorXq16R8qpd ada@lab";
const FINGERPRINT: &str = "SHA256:qssXkA28cUCYLhXmSlC2AYhnAMm6Kfva0BVaSunHiWQ";

async fn keys_add_list_delete(app: TestApp) {
    let ada = app.user("ada@example.org").await;
    let (status, key) = app.call(&ada, "add_key", &[("public_key", KEY)]).await;
    assert_eq!(status, StatusCode::OK, "{key}");
    assert_eq!(key["fingerprint"], FINGERPRINT);
    let (status, dup) = app.call(&ada, "add_key", &[("public_key", KEY)]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(dup["message"].as_str().unwrap().contains("already"), "{dup}");
    let (status, bad) =
        app.post(&ada, "/keys", None, json!({ "public_key": "ssh-rsa AAAA-not-a-key" })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(bad["error"]["field"], "public_key");

    let (_, list) = app.get(&ada, "/keys", None).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let id = list[0]["id"].as_i64().unwrap();

    // Another user can neither see nor delete it.
    let bob = app.user("bob@example.org").await;
    let (_, bobs) = app.get(&bob, "/keys", None).await;
    assert_eq!(bobs, json!([]));
    let (status, _) = app.api(&bob, Method::DELETE, &format!("/keys/{id}"), None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, _) = app.api(&ada, Method::DELETE, &format!("/keys/{id}"), None, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(app.count("ssh_keys").await, 0);
}

async fn tokens_are_hashed_scoped_and_revocable(app: TestApp) {
    let ada = app.user("ada@example.org").await;
    let write = app.token(&ada, "write").await;
    let read = app.token(&ada, "read").await;
    assert!(write.starts_with("ptl_"));

    // Stored only as a hash.
    use sea_orm::EntityTrait;
    let rows = portolan_core::db::entity::api_token::Entity::find().all(&app.db).await.unwrap();
    assert_eq!(rows.len(), 2);
    for row in &rows {
        assert_ne!(row.token_hash, write);
        assert_ne!(row.token_hash, read);
    }
    assert!(rows.iter().any(|r| r.token_hash == portolan_core::auth::hash_token(&write)));

    let script = Client::new();
    let (status, me) = app.get(&script, "/me", Some(&write)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["email"], "ada@example.org");

    // A read token reads but cannot write.
    let (status, _) = app.get(&script, "/projects", Some(&read)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app.post(&script, "/projects", Some(&read), json!({ "name": "readonly" })).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(app.count("projects").await, 0);
    let (status, _) = app.post(&script, "/projects", Some(&write), json!({ "name": "scripted" })).await;
    assert_eq!(status, StatusCode::CREATED);

    // A token can never create a token.
    let (status, body) =
        app.post(&script, "/tokens", Some(&write), json!({ "name": "child", "scope": "write" })).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(app.count("api_tokens").await, 2);

    // Revoked tokens are refused; listing shows when it was used and revoked, never the secret.
    let (_, list) = app.get(&ada, "/tokens", None).await;
    let write_id =
        list.as_array().unwrap().iter().find(|t| t["scope"] == "write").unwrap()["id"].as_i64().unwrap();
    assert!(list.to_string().find("ptl_").is_none());
    let (status, _) = app.api(&ada, Method::DELETE, &format!("/tokens/{write_id}"), None, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app.get(&script, "/me", Some(&write)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, list) = app.get(&ada, "/tokens", None).await;
    let revoked = list.as_array().unwrap().iter().find(|t| t["id"] == write_id).unwrap();
    assert!(revoked["revoked_at"].is_string());
    assert!(revoked["last_used_at"].is_string());

    // Garbage and other users' tokens.
    for bad in ["ptl_0000", "Bearer", ""] {
        let (status, _) = app.get(&script, "/me", Some(bad)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad}");
    }
    let bob = app.user("bob@example.org").await;
    let (status, _) = app.api(&bob, Method::DELETE, &format!("/tokens/{write_id}"), None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn token_use_is_recorded_to_the_minute(app: TestApp) {
    use portolan_core::db::entity::api_token;
    use sea_orm::{ActiveModelTrait, EntityTrait, Set};
    let ada = app.user("ada@example.org").await;
    let secret = app.token(&ada, "read").await;
    let script = Client::new();
    let last_used = || async {
        let rows = api_token::Entity::find().all(&app.db).await.unwrap();
        rows[0].last_used_at.expect("the token was used")
    };
    app.get(&script, "/me", Some(&secret)).await;
    let first = last_used().await;
    app.get(&script, "/me", Some(&secret)).await;
    assert_eq!(last_used().await, first, "a second call within the minute writes nothing");
    // A minute later (moved back in the database), the next call records itself again.
    let row = api_token::Entity::find().all(&app.db).await.unwrap().remove(0);
    let earlier = first - chrono::TimeDelta::seconds(61);
    let mut active: api_token::ActiveModel = row.into();
    active.last_used_at = Set(Some(earlier));
    active.update(&app.db).await.unwrap();
    app.get(&script, "/me", Some(&secret)).await;
    assert!(last_used().await > earlier + chrono::TimeDelta::seconds(30));
}

on_both_databases!(
    keys_add_list_delete,
    tokens_are_hashed_scoped_and_revocable,
    token_use_is_recorded_to_the_minute
);
