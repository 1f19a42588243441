//! Cross-site requests, bad bodies, and the shape of error responses (snapshotted with insta).

mod common;

use common::TestApp;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

async fn cross_origin_posts_are_refused(app: TestApp) {
    let ada = app.user("ada@example.org").await;
    // A page on another site submitting a form to the portal with Ada's cookie.
    let forged = ada
        .post(app.url("/sf/create_project"))
        .header("origin", "http://evil.example")
        .form(&[("name", "pwned"), ("description", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let body: Value = forged.json().await.unwrap();
    insta::assert_json_snapshot!("cross_origin_refused", body);
    let forged = ada
        .post(app.url("/api/v1/projects"))
        .header("sec-fetch-site", "cross-site")
        .json(&json!({ "name": "pwned" }))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.count("projects").await, 0, "nothing created");

    // The same request from the portal's own pages passes.
    let own = ada
        .post(app.url("/sf/create_project"))
        .header("origin", format!("http://{}", app.addr))
        .header("sec-fetch-site", "same-origin")
        .form(&[("name", "mine"), ("description", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), StatusCode::OK);
}

async fn state_changes_are_never_gets(app: TestApp) {
    let ada = app.user("ada@example.org").await;
    let response = ada.get(app.url("/sf/create_project?name=viaget&description=x")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "POST");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "method_not_allowed", "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert_eq!(app.count("projects").await, 0);
}

async fn bad_bodies_get_clear_json_errors(app: TestApp) {
    let ada = app.user("ada@example.org").await;
    let token = app.token(&ada, "write").await;
    let script = Client::new();

    let response = script
        .post(app.url("/api/v1/projects"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{ not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    insta::assert_json_snapshot!("malformed_json", response.json::<Value>().await.unwrap());

    let (status, body) =
        app.post(&script, "/projects", Some(&token), json!({ "description": "no name" })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    insta::assert_json_snapshot!("missing_field", body);

    let (status, body) = app.post(&script, "/projects", Some(&token), json!({ "name": "x y" })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    insta::assert_json_snapshot!("invalid_project_name", body);

    let huge = "a".repeat(server::web::MAX_BODY + 1);
    let (status, body) = app.post(&script, "/keys", Some(&token), json!({ "public_key": huge })).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    insta::assert_json_snapshot!("too_large", body);

    // `/keys/{id}` answers only DELETE: a GET is 405, in the JSON shape, whatever the id looks like.
    let (status, body) = app.get(&script, "/keys/not-a-number", Some(&token)).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    insta::assert_json_snapshot!("method_not_allowed", body);
    let (status, body) =
        app.api(&script, reqwest::Method::DELETE, "/keys/not-a-number", Some(&token), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_input");

    let (status, body) = app.get(&script, "/no/such/route", Some(&token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    insta::assert_json_snapshot!("unknown_route", body);
    assert_eq!(app.count("projects").await, 0);
    assert_eq!(app.count("ssh_keys").await, 0);
}

async fn openapi_document_lists_the_api(app: TestApp) {
    let (status, doc) = app.get(&Client::new(), "/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    // Every route, both ways, is checked in tests/http.rs (`every_route_is_documented`).
    for path in ["/api/v1/me", "/api/v1/projects", "/api/v1/keys/{id}", "/api/v1/tokens"] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
}

async fn responses_carry_security_headers(app: TestApp) {
    let response = Client::new().get(app.url("/login")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-frame-options"], "DENY");
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    let page = response.text().await.unwrap();
    assert!(page.contains("<form"), "the login form renders on the server");
    assert!(page.contains("action=\"/sf/login\""), "and posts without JavaScript");
}

async fn unknown_pages_are_a_plain_404(app: TestApp) {
    let ada = app.user("ada@example.org").await;
    for client in [Client::new(), ada] {
        let response = client.get(app.url("/no/such/page")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let page = response.text().await.unwrap();
        assert!(page.contains("There is no page here."), "{page}");
    }
}

on_both_databases!(
    unknown_pages_are_a_plain_404,
    cross_origin_posts_are_refused,
    state_changes_are_never_gets,
    bad_bodies_get_clear_json_errors,
    openapi_document_lists_the_api,
    responses_carry_security_headers,
);
