//! The web UI's side of nodes, over HTTP: the server functions the pages call (who may call which, how their
//! arguments are encoded, the errors they answer) and the pages as the server renders them. On SQLite: the
//! services underneath are tested on both databases with discovery; here there is no testbed, so no nodes.

mod common;

use common::TestApp;
use reqwest::{Client, StatusCode};

/// A logged-in user made an operator (as `portolan admin make-operator` does).
async fn operator(app: &TestApp, email: &str) -> Client {
    let browser = app.user(email).await;
    portolan_core::accounts::set_operator(&app.db, &portolan_core::clock::Clock::real(), email, true)
        .await
        .unwrap();
    browser
}

/// The thresholds of the operators' form as the hydrated page sends them (empty: off).
fn thresholds<'a>(max_load: &'a str, failures: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![
        ("thresholds[max_load]", max_load),
        ("thresholds[min_disk_free_pct]", ""),
        ("thresholds[min_memory_free_mb]", ""),
        ("thresholds[max_metric_age_s]", "900"),
        ("thresholds[max_path_age_s]", ""),
        ("thresholds[exclude_after_failures]", failures),
        ("thresholds[allow_untested]", "true"),
    ]
}

#[tokio::test]
async fn nodes_are_for_signed_in_users() {
    let app = TestApp::sqlite().await;
    let (status, body) = app.call(&app.browser(), "list_nodes", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _) = app.call(&app.browser(), "list_sites", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let ada = app.user("ada@example.org").await;
    let (status, page) = app.call(&ada, "list_nodes", &[]).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["total"], 0);
    let pools: Vec<&str> =
        page["pools"].as_array().unwrap().iter().map(|p| p["pool"].as_str().unwrap()).collect();
    assert_eq!(pools, ["new", "free", "down", "gone", "held"]);
    let (status, page) = app
        .call(&ada, "list_nodes", &[("query[class]", "dsl"), ("query[q]", "mit"), ("query[limit]", "50")])
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    // The listing's errors name the filter, as the service says.
    let (status, body) = app.call(&ada, "list_nodes", &[("query[class]", "fibre")]).await;
    assert_eq!((status, &body["field"]), (StatusCode::BAD_REQUEST, &serde_json::json!("class")), "{body}");
    let (status, body) = app.call(&ada, "list_nodes", &[("query[limit]", "5000")]).await;
    assert_eq!((status, &body["field"]), (StatusCode::BAD_REQUEST, &serde_json::json!("limit")), "{body}");
    let (status, body) = app.call(&ada, "get_node", &[("id", "1")]).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, sites) = app.call(&ada, "list_sites", &[]).await;
    assert_eq!((status, sites), (StatusCode::OK, serde_json::json!([])));
}

#[tokio::test]
async fn the_operators_functions_refuse_everyone_else() {
    let app = TestApp::sqlite().await;
    let ada = app.user("ada@example.org").await;
    let form = thresholds("", "2");
    for (name, form) in [
        ("get_admission", vec![]),
        ("admission_what_if", form.clone()),
        ("put_admission", form.clone()),
        ("identity_decisions", vec![]),
        ("discovery_runs", vec![]),
        ("decide_identity", vec![("id", "1"), ("decision", "new")]),
    ] {
        let (status, body) = app.call(&ada, name, &form).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{name}: {body}");
        let (status, body) = app.call(&app.browser(), name, &form).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}: {body}");
    }
    assert_eq!(app.count("admission_thresholds").await, 0, "nothing stored");
}

#[tokio::test]
async fn an_operator_asks_what_if_then_saves_thresholds() {
    let app = TestApp::sqlite().await;
    let ops = operator(&app, "ops@example.org").await;
    let (status, stored) = app.call(&ops, "get_admission", &[]).await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(stored["max_load"], 4.0);

    // The "what if" answers for thresholds as typed, and stores nothing.
    let (status, counts) = app.call(&ops, "admission_what_if", &thresholds("", "2")).await;
    assert_eq!(status, StatusCode::OK, "{counts}");
    let classes: Vec<&str> =
        counts["classes"].as_array().unwrap().iter().map(|c| c["class"].as_str().unwrap()).collect();
    assert_eq!(classes, ["internet2", "commodity", "international", "dsl"]);
    let (status, body) = app.call(&ops, "admission_what_if", &thresholds("0", "2")).await;
    assert_eq!((status, &body["field"]), (StatusCode::BAD_REQUEST, &serde_json::json!("max_load")), "{body}");
    assert_eq!(app.count("admission_thresholds").await, 0);

    // A bad value is refused naming its field, and changes nothing; a good one is stored (empty: off).
    let (status, body) = app.call(&ops, "put_admission", &thresholds("0", "2")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["field"], "max_load");
    assert!(body["message"].as_str().unwrap().contains("max_load"), "{body}");
    let (status, body) = app.call(&ops, "put_admission", &thresholds("", "x")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(app.count("admission_thresholds").await, 0);
    let (status, saved) = app.call(&ops, "put_admission", &thresholds("", "3")).await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    let (_, stored) = app.call(&ops, "get_admission", &[]).await;
    assert_eq!(stored["max_load"], serde_json::Value::Null);
    assert_eq!(stored["max_metric_age_s"], 900.0);
    assert_eq!(stored["exclude_after_failures"], 3);
    assert_eq!(stored["allow_untested"], true);

    // Decisions: the answer is checked before anything is looked up.
    for (form, field) in [
        (vec![("id", "1"), ("decision", "maybe")], "decision"),
        (vec![("id", "1"), ("decision", "accept")], "node_id"),
    ] {
        let (status, body) = app.call(&ops, "decide_identity", &form).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["field"], field, "{body}");
    }
    let (status, body) = app.call(&ops, "decide_identity", &[("id", "1"), ("decision", "new")]).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) =
        app.call(&ops, "decide_identity", &[("id", "1"), ("decision", "accept"), ("node_id", "2")]).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, pending) = app.call(&ops, "identity_decisions", &[]).await;
    assert_eq!((status, pending), (StatusCode::OK, serde_json::json!([])));
    let (status, runs) = app.call(&ops, "discovery_runs", &[]).await;
    assert_eq!((status, runs), (StatusCode::OK, serde_json::json!([])));
}

#[tokio::test]
async fn the_pages_render_on_the_server() {
    let app = TestApp::sqlite().await;
    let page = |client: Client, path: &'static str| {
        let url = app.url(path);
        async move {
            let response = client.get(url).send().await.unwrap();
            (response.status(), response.text().await.unwrap())
        }
    };
    let (status, html) = page(app.browser(), "/nodes").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(html.contains("log in"), "a visitor is asked to log in");

    let ada = app.user("ada@example.org").await;
    let (status, html) = page(ada.clone(), "/nodes?class=dsl&q=mit").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(r#"data-testid="node-total""#) && html.contains("0 nodes match"), "{html}");
    assert!(html.contains(r#"<option value="dsl" selected"#), "the filter shows the URL's class");
    assert!(html.contains(r#"value="mit""#), "the search box shows the URL's text");
    assert!(!html.contains(r#"href="/operators""#), "no Operators link for a user");
    let (status, html) = page(ada.clone(), "/sites").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("No sites yet"), "{html}");
    let (status, html) = page(ada.clone(), "/nodes/12345").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains("node 12345"), "{html}");
    let (status, html) = page(ada.clone(), "/nodes/abc").await;
    assert_eq!(status, StatusCode::OK, "no server call for an id that is not one");
    assert!(html.contains("not found"), "{html}");
    let (status, html) = page(ada, "/operators").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Operators only") && !html.contains("Admission thresholds"), "{html}");

    let ops = operator(&app, "ops@example.org").await;
    let (status, html) = page(ops, "/operators").await;
    assert_eq!(status, StatusCode::OK);
    for shown in [
        r#"href="/operators""#,
        "Admission thresholds",
        r#"data-testid="threshold-max_load" value="4""#,
        r#"data-testid="what-if-passing">0<"#,
        "No identity decisions are pending.",
        "Discovery has not run yet.",
    ] {
        assert!(html.contains(shown), "{shown} in {html}");
    }
}
