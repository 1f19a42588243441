//! Projects, memberships and join requests, and that every read is scoped to the caller's projects.

mod common;

use common::TestApp;
use portolan_core::clock::Clock;
use reqwest::StatusCode;
use serde_json::json;

async fn create_and_list(app: TestApp) {
    let ada = app.user("ada@example.org").await;
    let project = app.create_project(&ada, "wanlab").await;
    assert_eq!(project["my_role"], "leader");
    let (status, list) = app.get(&ada, "/projects", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["name"], "wanlab");
    let (_, members) = app.get(&ada, "/projects/wanlab/members", None).await;
    assert_eq!(members[0]["email"], "ada@example.org");
    assert_eq!(members[0]["role"], "leader");
}

async fn bad_project_names_store_nothing(app: TestApp) {
    let ada = app.user("ada@example.org").await;
    app.create_project(&ada, "wanlab").await;
    for name in ["", "ab", "Has Caps", "semi;colon", "wanlab", "$(reboot)"] {
        let (status, body) = app.call(&ada, "create_project", &[("name", name), ("description", "")]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {body}");
        assert_eq!(body["field"], "name");
    }
    assert_eq!(app.count("projects").await, 1);
    assert_eq!(app.count("memberships").await, 1);
}

async fn join_request_approved_by_leader(app: TestApp) {
    let ada = app.user("ada@example.org").await;
    let bob = app.user("bob@example.org").await;
    app.create_project(&ada, "wanlab").await;

    let (status, request) = app.call(&bob, "request_join", &[("project", "wanlab"), ("message", "hi")]).await;
    assert_eq!(status, StatusCode::OK, "{request}");
    assert_eq!(request["status"], "pending");
    let (status, again) = app.call(&bob, "request_join", &[("project", "wanlab"), ("message", "hi")]).await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");

    // Bob cannot see the project yet, nor decide his own request.
    let (status, _) = app.get(&bob, "/projects/wanlab", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let id = request["id"].as_i64().unwrap().to_string();
    let (status, _) = app.call(&bob, "decide_join", &[("id", &id), ("decision", "approve")]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (_, pending) = app.get(&ada, "/projects/wanlab/join-requests", None).await;
    assert_eq!(pending[0]["user_email"], "bob@example.org");
    let (status, decided) = app.call(&ada, "decide_join", &[("id", &id), ("decision", "approve")]).await;
    assert_eq!(status, StatusCode::OK, "{decided}");
    assert_eq!(decided["status"], "approved");

    let (_, list) = app.get(&bob, "/projects", None).await;
    assert_eq!(list[0]["name"], "wanlab");
    assert_eq!(list[0]["my_role"], "member");
    // A member is not a leader: cannot see or decide requests.
    let carol = app.user("carol@example.org").await;
    let (_, carols) =
        app.post(&carol, "/projects/wanlab/join-requests", None, json!({ "message": "me too" })).await;
    let carol_id = carols["id"].as_i64().unwrap();
    let (status, _) = app.get(&bob, "/projects/wanlab/join-requests", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app.post(&bob, &format!("/join-requests/{carol_id}/approve"), None, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, rejected) =
        app.post(&ada, &format!("/join-requests/{carol_id}/reject"), None, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(rejected["status"], "rejected");
    assert_eq!(app.count("memberships").await, 2);
}

/// Carol belongs to no project: nothing of Ada's project reaches her, through the API, the server functions
/// or the rendered page.
async fn other_projects_are_unreachable(app: TestApp) {
    let ada = app.user("ada@example.org").await;
    let carol = app.user("carol@example.org").await;
    app.call(&ada, "create_project", &[("name", "secretlab"), ("description", "the hidden description")])
        .await;

    let (_, list) = app.get(&carol, "/projects", None).await;
    assert_eq!(list, json!([]));
    for path in ["/projects/secretlab", "/projects/secretlab/members", "/projects/secretlab/join-requests"] {
        let (status, body) = app.get(&carol, path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
    }
    let (status, _) = app.call(&carol, "get_project", &[("name", "secretlab")]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let page = carol.get(app.url("/projects/secretlab")).send().await.unwrap().text().await.unwrap();
    assert!(!page.contains("the hidden description"));
    assert!(page.contains("project secretlab not found"), "the page says so");
    let page = ada.get(app.url("/projects/secretlab")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("the hidden description"), "while its member sees it rendered");
    let token = app.token(&carol, "write").await;
    let (status, _) = app.get(&reqwest::Client::new(), "/projects/secretlab", Some(&token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn operators_see_every_project(app: TestApp) {
    let ada = app.user("ada@example.org").await;
    app.create_project(&ada, "wanlab").await;
    let ops = app.user("ops@example.org").await;
    portolan_core::accounts::set_operator(&app.db, &Clock::real(), "ops@example.org", true).await.unwrap();
    let (_, list) = app.get(&ops, "/projects", None).await;
    assert_eq!(list[0]["name"], "wanlab");
    assert_eq!(list[0]["my_role"], serde_json::Value::Null);
    let (status, detail) = app.get(&ops, "/projects/wanlab", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(detail["members"][0]["email"], "ada@example.org");
}

on_both_databases!(
    create_and_list,
    bad_project_names_store_nothing,
    join_request_approved_by_leader,
    other_projects_are_unreachable,
    operators_see_every_project,
);
