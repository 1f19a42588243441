//! The nodes API: listings with filters and paging, a node's identity history, sites, admission thresholds
//! (with their "what if" counts), discovery runs and identity decisions. The database starts without nodes;
//! each test applies hand-made testbed readings with `nodes::sync::apply`, as discovery would.

mod common;

use chrono::{DateTime, TimeDelta, Utc};
use common::TestApp;
use portolan_core::clock::Clock;
use portolan_core::nodes::sync::{self, SyncReport};
use portolan_core::testbed::{NodeRecord, SiteRecord};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeMap;

fn site(site_id: i32, login_base: &str, name: &str) -> SiteRecord {
    SiteRecord {
        site_id,
        login_base: login_base.to_owned(),
        name: name.to_owned(),
        enabled: true,
        max_slices: Some(10),
        latitude: None,
        longitude: None,
    }
}

fn node(node_id: i32, hostname: &str, site_id: i32, boot_state: &str, ip: &str, class: &str) -> NodeRecord {
    NodeRecord {
        node_id,
        hostname: hostname.to_owned(),
        site_id,
        boot_state: boot_state.to_owned(),
        ip: Some(ip.to_owned()),
        host_key: Some(format!("ssh-ed25519 AAAAkey{node_id}")),
        last_contact: None,
        tags: BTreeMap::from([
            ("link_class".to_owned(), class.to_owned()),
            ("country".to_owned(), "US".to_owned()),
        ]),
    }
}

fn sites() -> Vec<SiteRecord> {
    vec![site(1, "princeton", "Princeton University"), site(2, "mit", "MIT"), site(3, "ucb", "UC Berkeley")]
}

/// Five nodes at three sites; `node2.mit.edu` is not booted (pool `down`), the others are `new`.
fn nodes() -> Vec<NodeRecord> {
    vec![
        node(101, "planetlab1.princeton.edu", 1, "boot", "128.112.139.1", "internet2"),
        node(102, "planetlab2.princeton.edu", 1, "boot", "128.112.139.2", "commodity"),
        node(201, "node1.mit.edu", 2, "boot", "18.26.4.1", "internet2"),
        node(202, "node2.mit.edu", 2, "dbg", "18.26.4.2", "international"),
        node(301, "pl1.ucb.edu", 3, "boot", "169.229.50.1", "dsl"),
    ]
}

/// Applies one reading of the testbed, as discovery would (while the server's own loops and requests write
/// too: `sync::apply` takes SQLite's write lock first, so it waits for them rather than failing).
async fn apply(app: &TestApp, now: DateTime<Utc>, sites: &[SiteRecord], nodes: &[NodeRecord]) -> SyncReport {
    sync::apply(&app.db, now, sites, nodes).await.unwrap_or_else(|e| panic!("sync::apply failed: {e:?}"))
}

async fn seed(app: &TestApp, now: DateTime<Utc>) {
    let report = apply(app, now, &sites(), &nodes()).await;
    assert_eq!((report.sites_added, report.added), (3, 5), "{report:?}");
}

/// A signed-in operator.
async fn operator(app: &TestApp, email: &str) -> Client {
    let browser = app.user(email).await;
    portolan_core::accounts::set_operator(&app.db, &Clock::real(), email, true).await.unwrap();
    browser
}

async fn put(
    app: &TestApp,
    client: &Client,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> (StatusCode, Value) {
    app.api(client, Method::PUT, path, token, Some(body)).await
}

fn hostnames(page: &Value) -> Vec<&str> {
    page["nodes"].as_array().unwrap().iter().map(|n| n["hostname"].as_str().unwrap()).collect()
}

fn pool_counts(page: &Value) -> BTreeMap<String, u64> {
    page["pools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["pool"].as_str().unwrap().to_owned(), p["count"].as_u64().unwrap()))
        .collect()
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    let mut all: BTreeMap<String, u64> =
        ["new", "free", "down", "gone", "held"].iter().map(|p| ((*p).to_owned(), 0)).collect();
    for (pool, n) in pairs {
        all.insert((*pool).to_owned(), *n);
    }
    all
}

async fn node_id(app: &TestApp, client: &Client, hostname: &str) -> i64 {
    let (status, page) = app.get(client, &format!("/nodes?q={hostname}"), None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let found: Vec<&Value> =
        page["nodes"].as_array().unwrap().iter().filter(|n| n["hostname"] == hostname).collect();
    assert_eq!(found.len(), 1, "{page}");
    found[0]["id"].as_i64().unwrap()
}

async fn listing_filters_and_pages(app: TestApp) {
    seed(&app, Utc::now()).await;
    let ada = app.user("ada@example.org").await;

    let (status, all) = app.get(&ada, "/nodes", None).await;
    assert_eq!(status, StatusCode::OK, "{all}");
    assert_eq!(all["total"], 5);
    assert_eq!(
        hostnames(&all),
        [
            "node1.mit.edu",
            "node2.mit.edu",
            "pl1.ucb.edu",
            "planetlab1.princeton.edu",
            "planetlab2.princeton.edu"
        ],
        "ordered by hostname"
    );
    assert_eq!(pool_counts(&all), counts(&[("new", 4), ("down", 1)]));
    let down = &all["nodes"][1];
    assert_eq!(down["pool"], "down");
    assert_eq!(down["boot_state"], "dbg");
    assert_eq!(down["site"], "mit");
    assert_eq!(down["link_class"], "international");
    assert_eq!(down["testbed_id"], 202);
    assert_eq!(down["ip"], "18.26.4.2");
    assert_eq!(down["country"], "US");

    // Each filter alone.
    let (_, mit) = app.get(&ada, "/nodes?site=mit", None).await;
    assert_eq!(hostnames(&mit), ["node1.mit.edu", "node2.mit.edu"]);
    assert_eq!(mit["total"], 2);
    assert_eq!(pool_counts(&mit), counts(&[("new", 1), ("down", 1)]));
    let (_, upper) = app.get(&ada, "/nodes?site=MIT", None).await;
    assert_eq!(upper["total"], 2, "login bases are matched case-insensitively");
    let (_, nowhere) = app.get(&ada, "/nodes?site=nowhere", None).await;
    assert_eq!(nowhere["total"], 0);
    assert_eq!(hostnames(&nowhere), Vec::<&str>::new());
    assert_eq!(pool_counts(&nowhere), counts(&[]));

    let (_, i2) = app.get(&ada, "/nodes?class=internet2", None).await;
    assert_eq!(hostnames(&i2), ["node1.mit.edu", "planetlab1.princeton.edu"]);
    assert_eq!(pool_counts(&i2), counts(&[("new", 2)]));

    let (_, down) = app.get(&ada, "/nodes?pool=down", None).await;
    assert_eq!(hostnames(&down), ["node2.mit.edu"]);
    assert_eq!(down["total"], 1);
    assert_eq!(pool_counts(&down), counts(&[("new", 4), ("down", 1)]), "the pool filter aside");
    let (_, new_at_mit) = app.get(&ada, "/nodes?pool=new&site=mit", None).await;
    assert_eq!(hostnames(&new_at_mit), ["node1.mit.edu"]);
    assert_eq!(pool_counts(&new_at_mit), counts(&[("new", 1), ("down", 1)]));

    let (_, q) = app.get(&ada, "/nodes?q=PRINCETON", None).await;
    assert_eq!(hostnames(&q), ["planetlab1.princeton.edu", "planetlab2.princeton.edu"]);
    let (_, by_ip) = app.get(&ada, "/nodes?q=18.26.4", None).await;
    assert_eq!(hostnames(&by_ip), ["node1.mit.edu", "node2.mit.edu"]);
    let (_, combined) = app.get(&ada, "/nodes?class=internet2&site=princeton&q=planetlab", None).await;
    assert_eq!(hostnames(&combined), ["planetlab1.princeton.edu"]);

    // Paging: the total and counts are of everything matched, the page is a slice of it.
    let (_, first) = app.get(&ada, "/nodes?limit=2", None).await;
    assert_eq!(hostnames(&first), ["node1.mit.edu", "node2.mit.edu"]);
    assert_eq!(first["total"], 5);
    assert_eq!(pool_counts(&first), counts(&[("new", 4), ("down", 1)]));
    let (_, second) = app.get(&ada, "/nodes?offset=2&limit=2", None).await;
    assert_eq!(hostnames(&second), ["pl1.ucb.edu", "planetlab1.princeton.edu"]);
    let (_, last) = app.get(&ada, "/nodes?offset=4&limit=2", None).await;
    assert_eq!(hostnames(&last), ["planetlab2.princeton.edu"]);
    assert_eq!(last["total"], 5);
    let (_, past) = app.get(&ada, "/nodes?offset=50", None).await;
    assert_eq!(hostnames(&past), Vec::<&str>::new());
    assert_eq!(past["total"], 5);

    // Bad filters name the field.
    for (query, field) in
        [("class=fiber", "class"), ("pool=busy", "pool"), ("limit=0", "limit"), ("limit=1001", "limit")]
    {
        let (status, body) = app.get(&ada, &format!("/nodes?{query}"), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["error"]["code"], "invalid_input", "{query}: {body}");
        assert_eq!(body["error"]["field"], field, "{query}: {body}");
    }
    let (status, body) = app.get(&ada, "/nodes?limit=many", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_input", "a malformed query is a JSON error too: {body}");

    // A read token reads.
    let token = app.token(&ada, "read").await;
    let (status, page) = app.get(&Client::new(), "/nodes?site=ucb", Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(hostnames(&page), ["pl1.ucb.edu"]);
}

async fn node_detail_has_identity_history(app: TestApp) {
    let t0 = Utc::now() - TimeDelta::minutes(10);
    seed(&app, t0).await;
    let ada = app.user("ada@example.org").await;
    let id = node_id(&app, &ada, "planetlab2.princeton.edu").await;

    let (status, detail) = app.get(&ada, &format!("/nodes/{id}"), None).await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    assert_eq!(detail["node"]["id"], id);
    assert_eq!(detail["node"]["hostname"], "planetlab2.princeton.edu");
    assert_eq!(detail["node"]["site"], "princeton");
    assert_eq!(detail["node"]["pool"], "new");
    assert_eq!(detail["host_key"], "ssh-ed25519 AAAAkey102");
    assert_eq!(detail["tags"]["link_class"], "commodity");
    assert_eq!(detail["load"], Value::Null, "metrics unknown until service slivers report them");
    assert_eq!(detail["identity"].as_array().unwrap().len(), 1, "{detail}");
    assert_eq!(detail["identity"][0]["kind"], "appeared");
    assert_eq!(detail["identity"][0]["new"]["hostname"], "planetlab2.princeton.edu");
    assert_eq!(detail["paths"], json!([]));

    // The second reading renames the node (same testbed id, IP and host key): same node, a `changed` event.
    let mut renamed = nodes();
    renamed[1].hostname = "pl2.cs.princeton.edu".to_owned();
    let report = apply(&app, t0 + TimeDelta::minutes(5), &sites(), &renamed).await;
    assert_eq!((report.identity_changed, report.added, report.gone), (1, 0, 0), "{report:?}");

    let (status, detail) = app.get(&ada, &format!("/nodes/{id}"), None).await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    assert_eq!(detail["node"]["id"], id, "Portolan's id stays");
    assert_eq!(detail["node"]["hostname"], "pl2.cs.princeton.edu");
    let history = detail["identity"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{detail}");
    assert_eq!(history[0]["kind"], "changed", "newest first: {detail}");
    assert_eq!(history[0]["old"]["hostname"], "planetlab2.princeton.edu");
    assert_eq!(history[0]["new"]["hostname"], "pl2.cs.princeton.edu");
    assert!(history[0]["detail"].as_str().unwrap().contains("hostname"), "{detail}");
    assert!(history[0]["score"].as_i64().unwrap() > 0, "{detail}");
    assert_eq!(history[1]["kind"], "appeared");
    assert_eq!(node_id(&app, &ada, "pl2.cs.princeton.edu").await, id);
    let (_, old_name) = app.get(&ada, "/nodes?q=planetlab2", None).await;
    assert_eq!(old_name["total"], 0);

    // Another node is untouched.
    let other = node_id(&app, &ada, "planetlab1.princeton.edu").await;
    let (_, detail) = app.get(&ada, &format!("/nodes/{other}"), None).await;
    assert_eq!(detail["identity"].as_array().unwrap().len(), 1, "{detail}");

    // Unknown and malformed ids.
    let (status, body) = app.get(&ada, "/nodes/999999", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
    let (status, body) = app.get(&ada, "/nodes/abc", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_input");
}

async fn sites_count_listed_and_allocatable_nodes(app: TestApp) {
    let ada = app.user("ada@example.org").await;
    let (status, none) = app.get(&ada, "/sites", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(none, json!([]), "no sites before discovery");

    seed(&app, Utc::now()).await;
    let (status, list) = app.get(&ada, "/sites", None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(
        list,
        json!([
            { "login_base": "mit", "name": "MIT", "present": true, "nodes": 2, "allocatable": 1 },
            { "login_base": "princeton", "name": "Princeton University", "present": true, "nodes": 2, "allocatable": 2 },
            { "login_base": "ucb", "name": "UC Berkeley", "present": true, "nodes": 1, "allocatable": 1 },
        ])
    );

    // While untested nodes are not lent, none of these (all `new` or `down`) is allocatable.
    let ops = operator(&app, "ops@example.org").await;
    let mut thresholds = app.get(&ops, "/admission", None).await.1;
    thresholds["allow_untested"] = json!(false);
    let (status, body) = put(&app, &ops, "/admission", None, thresholds).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, list) = app.get(&ada, "/sites", None).await;
    let allocatable: Vec<u64> =
        list.as_array().unwrap().iter().map(|s| s["allocatable"].as_u64().unwrap()).collect();
    assert_eq!(allocatable, [0, 0, 0], "{list}");

    // A site the testbed stops listing is kept, not present; its nodes are gone and no longer counted.
    let report = apply(&app, Utc::now(), &sites()[..2], &nodes()[..4]).await;
    assert_eq!((report.sites_gone, report.gone), (1, 1), "{report:?}");
    let (_, list) = app.get(&ada, "/sites", None).await;
    assert_eq!(list[2]["login_base"], "ucb");
    assert_eq!(list[2]["present"], false);
    assert_eq!(list[2]["nodes"], 0);
}

async fn admission_is_read_by_all_and_written_by_operators(app: TestApp) {
    let ada = app.user("ada@example.org").await;
    let ops = operator(&app, "ops@example.org").await;

    let (status, defaults) = app.get(&ada, "/admission", None).await;
    assert_eq!(status, StatusCode::OK, "{defaults}");
    assert_eq!(
        defaults,
        json!({
            "max_load": 4.0,
            "min_disk_free_pct": 10.0,
            "min_memory_free_mb": 256.0,
            "max_metric_age_s": 900.0,
            "max_path_age_s": 3600.0,
            "exclude_after_failures": 2,
            "allow_untested": true,
        })
    );
    let wanted = json!({
        "max_load": 2.5,
        "min_disk_free_pct": 20.0,
        "min_memory_free_mb": null,
        "max_metric_age_s": 600.0,
        "max_path_age_s": null,
        "exclude_after_failures": 3,
        "allow_untested": false,
    });

    // Not an operator: refused, nothing stored.
    let (status, body) = put(&app, &ada, "/admission", None, wanted.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
    assert_eq!(app.count("admission_thresholds").await, 0);

    // An operator's read-only token: refused too.
    let read = app.token(&ops, "read").await;
    let script = Client::new();
    let (status, body) = put(&app, &script, "/admission", Some(&read), wanted.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = app.get(&script, "/admission", Some(&read)).await;
    assert_eq!(status, StatusCode::OK, "but it reads");

    // The operator stores them; everyone reads them back.
    let (status, stored) = put(&app, &ops, "/admission", None, wanted.clone()).await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(stored, wanted);
    let (_, read_back) = app.get(&ada, "/admission", None).await;
    assert_eq!(read_back, wanted);
    let audits = app.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'admission.update'").await;
    assert_eq!(audits, 1);

    // Bad values are refused naming the field, and change nothing.
    let with = |field: &str, value: Value| {
        let mut body = wanted.clone();
        body[field] = value;
        body
    };
    let (status, body) = put(&app, &ops, "/admission", None, with("max_load", json!(-1))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "max_load");
    insta::assert_json_snapshot!("admission_negative_max_load", body);
    let (status, body) = put(&app, &ops, "/admission", None, with("min_disk_free_pct", json!(150))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "min_disk_free_pct");
    insta::assert_json_snapshot!("admission_disk_pct_over_100", body);
    for (field, value) in [
        ("max_load", json!(0)),
        ("min_memory_free_mb", json!(-5)),
        ("max_metric_age_s", json!(1e13)),
        ("max_path_age_s", json!(-0.5)),
        ("exclude_after_failures", json!(1001)),
    ] {
        let (status, body) = put(&app, &ops, "/admission", None, with(field, value.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field} = {value}: {body}");
        assert_eq!(body["error"]["field"], field, "{body}");
    }
    // Not the shape at all: a JSON error, nothing stored.
    for bad in
        [with("exclude_after_failures", json!(-1)), with("max_load", json!("high")), json!({ "surprise": 1 })]
    {
        let (status, body) = put(&app, &ops, "/admission", None, bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_input", "{body}");
    }
    let (_, read_back) = app.get(&ada, "/admission", None).await;
    assert_eq!(read_back, wanted, "refused values changed nothing");
    let audits = app.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'admission.update'").await;
    assert_eq!(audits, 1);

    // Turning every threshold off is allowed.
    let off = json!({
        "max_load": null, "min_disk_free_pct": null, "min_memory_free_mb": null, "max_metric_age_s": null,
        "max_path_age_s": null, "exclude_after_failures": 0, "allow_untested": true,
    });
    let (status, stored) = put(&app, &ops, "/admission", None, off.clone()).await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(app.get(&ada, "/admission", None).await.1, off);
}

fn classes(counts: &Value) -> BTreeMap<String, (u64, u64)> {
    counts["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let n = |k: &str| c[k].as_u64().unwrap();
            (c["class"].as_str().unwrap().to_owned(), (n("candidates"), n("passing")))
        })
        .collect()
}

async fn what_if_counts_and_stores_nothing(app: TestApp) {
    seed(&app, Utc::now()).await;
    let ada = app.user("ada@example.org").await;
    let off = json!({
        "max_load": null, "min_disk_free_pct": null, "min_memory_free_mb": null, "max_metric_age_s": null,
        "max_path_age_s": null, "exclude_after_failures": 0, "allow_untested": true,
    });

    // Every metric threshold off: every allocatable node passes (the four `new` ones; the down one is no
    // candidate).
    let (status, all_pass) = app.post(&ada, "/admission/what-if", None, off.clone()).await;
    assert_eq!(status, StatusCode::OK, "{all_pass}");
    assert_eq!(
        classes(&all_pass),
        BTreeMap::from([
            ("internet2".to_owned(), (2, 2)),
            ("commodity".to_owned(), (1, 1)),
            ("international".to_owned(), (0, 0)),
            ("dsl".to_owned(), (1, 1)),
        ])
    );
    assert_eq!(all_pass["rejections"], json!([]));
    assert_eq!(all_pass["fresh_paths"], 0);

    // A set max_load: every node's load is unknown, so every node is rejected, for that reason.
    let mut load = off.clone();
    load["max_load"] = json!(4.0);
    let (status, none_pass) = app.post(&ada, "/admission/what-if", None, load).await;
    assert_eq!(status, StatusCode::OK, "{none_pass}");
    assert!(classes(&none_pass).values().all(|(_, passing)| *passing == 0), "{none_pass}");
    assert_eq!(classes(&none_pass)["internet2"], (2, 0));
    assert_eq!(none_pass["rejections"], json!([["metrics a threshold needs are unknown", 4]]));

    // Untested nodes not lent: no candidates at all (none is `free` yet).
    let mut untested = off.clone();
    untested["allow_untested"] = json!(false);
    let (_, no_candidates) = app.post(&ada, "/admission/what-if", None, untested).await;
    assert!(classes(&no_candidates).values().all(|c| *c == (0, 0)), "{no_candidates}");

    // Bad values are refused as PUT refuses them.
    let mut bad = off.clone();
    bad["min_disk_free_pct"] = json!(150);
    let (status, body) = app.post(&ada, "/admission/what-if", None, bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "min_disk_free_pct");

    // Nothing was stored: the defaults are still in force, and a read token may ask too.
    assert_eq!(app.count("admission_thresholds").await, 0);
    assert_eq!(app.get(&ada, "/admission", None).await.1["max_load"], 4.0);
    let token = app.token(&ada, "read").await;
    let (status, _) = app.post(&Client::new(), "/admission/what-if", Some(&token), off).await;
    assert_eq!(status, StatusCode::OK);
}

async fn discovery_runs_for_operators(app: TestApp) {
    use portolan_core::db::entity::discovery_run;
    use sea_orm::{ActiveModelTrait, Set};
    let t0 = Utc::now() - TimeDelta::minutes(30);
    for (i, (kind, error)) in
        [("nodes", None), ("paths", Some("sensor feed unreachable"))].into_iter().enumerate()
    {
        discovery_run::ActiveModel {
            kind: Set(kind.to_owned()),
            started_at: Set(t0 + TimeDelta::minutes(i as i64)),
            duration_ms: Set(120),
            ok: Set(error.is_none()),
            counts: Set(json!({ "added": 5 }).to_string()),
            error: Set(error.map(str::to_owned)),
            ..Default::default()
        }
        .insert(&app.db)
        .await
        .unwrap();
    }
    let ada = app.user("ada@example.org").await;
    let (status, body) = app.get(&ada, "/discovery/runs", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");

    let ops = operator(&app, "ops@example.org").await;
    let (status, runs) = app.get(&ops, "/discovery/runs", None).await;
    assert_eq!(status, StatusCode::OK, "{runs}");
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["kind"], "paths", "newest first");
    assert_eq!(runs[0]["ok"], false);
    assert_eq!(runs[0]["error"], "sensor feed unreachable");
    assert_eq!(runs[1]["kind"], "nodes");
    assert_eq!(runs[1]["ok"], true);
    assert_eq!(runs[1]["counts"], json!({ "added": 5 }));
    assert_eq!(runs[1]["duration_ms"], 120);
    let read = app.token(&ops, "read").await;
    let (status, _) = app.get(&Client::new(), "/discovery/runs", Some(&read)).await;
    assert_eq!(status, StatusCode::OK, "reading needs no write scope");
}

async fn identity_decisions_for_operators(app: TestApp) {
    // Two nodes without host keys; the second reading lists a record sharing only its IP with the first
    // (hostname and testbed id both changed): too little to match, so it waits for an operator.
    let t0 = Utc::now() - TimeDelta::minutes(10);
    let keyless = |id: i32, host: &str, ip: &str| NodeRecord {
        host_key: None,
        ..node(id, host, 1, "boot", ip, "commodity")
    };
    let first = [keyless(101, "a.princeton.edu", "10.0.0.1"), keyless(102, "b.princeton.edu", "10.0.0.2")];
    apply(&app, t0, &sites()[..1], &first).await;
    let second = [keyless(999, "z.princeton.edu", "10.0.0.1"), keyless(102, "b.princeton.edu", "10.0.0.2")];
    let report = apply(&app, t0 + TimeDelta::minutes(1), &sites()[..1], &second).await;
    assert_eq!(report.held, 1, "{report:?}");

    let ada = app.user("ada@example.org").await;
    let ops = operator(&app, "ops@example.org").await;
    let a = node_id(&app, &ops, "a.princeton.edu").await;
    let b = node_id(&app, &ops, "b.princeton.edu").await;
    let (_, page) = app.get(&ops, "/nodes", None).await;
    assert_eq!(pool_counts(&page), counts(&[("held", 2), ("new", 1)]), "{page}");

    let (status, body) = app.get(&ada, "/identity-decisions", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, pending) = app.get(&ops, "/identity-decisions", None).await;
    assert_eq!(status, StatusCode::OK, "{pending}");
    let pending = pending.as_array().unwrap();
    assert_eq!(pending.len(), 1);
    let decision = &pending[0];
    assert_eq!(decision["node"]["hostname"], "z.princeton.edu");
    assert_eq!(decision["node"]["pool"], "held");
    assert_eq!(decision["candidates"].as_array().unwrap().len(), 1, "{decision}");
    assert_eq!(decision["candidates"][0]["node"]["id"], a);
    assert_eq!(decision["candidates"][0]["score"], 2, "the IP alone");
    assert!(!decision["reason"].as_str().unwrap().is_empty());
    let id = decision["id"].as_i64().unwrap();
    let path = format!("/identity-decisions/{id}");
    let accept_a = json!({ "decision": "accept", "node_id": a });

    // Refused: not an operator, a read-only token, not a candidate, an unknown decision, a malformed body.
    let (status, _) = app.post(&ada, &path, None, accept_a.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let read = app.token(&ops, "read").await;
    let (status, _) = app.post(&Client::new(), &path, Some(&read), accept_a.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = app.post(&ops, &path, None, json!({ "decision": "accept", "node_id": b })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "node_id");
    let (status, body) = app.post(&ops, "/identity-decisions/999999", None, accept_a.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = app.post(&ops, &path, None, json!({ "decision": "maybe" })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_input");
    assert_eq!(
        app.get(&ops, "/identity-decisions", None).await.1.as_array().unwrap().len(),
        1,
        "still pending"
    );

    // Accepted: the known node takes the record's attributes and keeps its id; the held twin goes.
    let (status, body) = app.post(&ops, &path, None, accept_a.clone()).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(app.get(&ops, "/identity-decisions", None).await.1, json!([]));
    let (status, detail) = app.get(&ada, &format!("/nodes/{a}"), None).await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    assert_eq!(detail["node"]["hostname"], "z.princeton.edu");
    assert_eq!(detail["node"]["testbed_id"], 999);
    assert_eq!(detail["node"]["pool"], "new");
    assert_eq!(detail["identity"][0]["kind"], "decided", "{detail}");
    let (_, page) = app.get(&ada, "/nodes", None).await;
    assert_eq!(page["total"], 2);
    assert_eq!(pool_counts(&page), counts(&[("new", 2)]));
    let (status, _) = app.post(&ops, &path, None, accept_a).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "decided once");
}

async fn unauthenticated_callers_get_401(app: TestApp) {
    seed(&app, Utc::now()).await;
    let script = Client::new();
    let thresholds = json!({
        "max_load": null, "min_disk_free_pct": null, "min_memory_free_mb": null, "max_metric_age_s": null,
        "max_path_age_s": null, "exclude_after_failures": 0, "allow_untested": true,
    });
    let calls: [(Method, &str, Option<Value>); 9] = [
        (Method::GET, "/nodes", None),
        (Method::GET, "/nodes/1", None),
        (Method::GET, "/sites", None),
        (Method::GET, "/admission", None),
        (Method::PUT, "/admission", Some(thresholds.clone())),
        (Method::POST, "/admission/what-if", Some(thresholds)),
        (Method::GET, "/discovery/runs", None),
        (Method::GET, "/identity-decisions", None),
        (Method::POST, "/identity-decisions/1", Some(json!({ "decision": "new" }))),
    ];
    for (method, path, body) in calls {
        for token in [None, Some("ptl_not_a_token")] {
            let (status, answer) = app.api(&script, method.clone(), path, token, body.clone()).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} {token:?}: {answer}");
            assert_eq!(answer["error"]["code"], "unauthenticated", "{answer}");
        }
    }
    assert_eq!(app.count("admission_thresholds").await, 0);
}

async fn operator_only_endpoints_refuse_others(app: TestApp) {
    seed(&app, Utc::now()).await;
    let ada = app.user("ada@example.org").await;
    let write = app.token(&ada, "write").await;
    let thresholds = app.get(&ada, "/admission", None).await.1;
    let calls: [(Method, &str, Option<Value>); 4] = [
        (Method::PUT, "/admission", Some(thresholds)),
        (Method::GET, "/discovery/runs", None),
        (Method::GET, "/identity-decisions", None),
        (Method::POST, "/identity-decisions/1", Some(json!({ "decision": "new" }))),
    ];
    for (method, path, body) in calls {
        let (status, answer) = app.api(&ada, method.clone(), path, None, body.clone()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {answer}");
        assert_eq!(answer["error"]["code"], "forbidden", "{answer}");
        let (status, _) = app.api(&Client::new(), method.clone(), path, Some(&write), body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path} with a write token");
    }
    // What every signed-in caller may do.
    for path in ["/nodes", "/sites", "/admission"] {
        let (status, body) = app.get(&ada, path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
}

async fn openapi_documents_the_nodes_api(app: TestApp) {
    let (status, doc) = app.get(&Client::new(), "/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    let paths = &doc["paths"];
    for (path, method) in [
        ("/api/v1/nodes", "get"),
        ("/api/v1/nodes/{id}", "get"),
        ("/api/v1/sites", "get"),
        ("/api/v1/admission", "get"),
        ("/api/v1/admission", "put"),
        ("/api/v1/admission/what-if", "post"),
        ("/api/v1/discovery/runs", "get"),
        ("/api/v1/identity-decisions", "get"),
        ("/api/v1/identity-decisions/{id}", "post"),
    ] {
        assert!(paths[path][method].is_object(), "{method} {path} is not documented");
        assert_eq!(paths[path][method]["tags"], json!(["nodes"]), "{method} {path}");
    }
    let params: Vec<(&str, &str)> = paths["/api/v1/nodes"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["in"].as_str().unwrap()))
        .collect();
    assert_eq!(
        params,
        [
            ("site", "query"),
            ("class", "query"),
            ("pool", "query"),
            ("q", "query"),
            ("offset", "query"),
            ("limit", "query")
        ]
    );
    let schemas = &doc["components"]["schemas"];
    for schema in [
        "NodePage",
        "NodeDetail",
        "SiteView",
        "AdmissionView",
        "AdmissionCounts",
        "DiscoveryRunView",
        "DecisionView",
        "Decision",
    ] {
        assert!(schemas[schema].is_object(), "schema {schema} missing");
    }
}

on_both_databases!(
    listing_filters_and_pages,
    node_detail_has_identity_history,
    sites_count_listed_and_allocatable_nodes,
    admission_is_read_by_all_and_written_by_operators,
    what_if_counts_and_stores_nothing,
    discovery_runs_for_operators,
    identity_decisions_for_operators,
    unauthenticated_callers_get_401,
    operator_only_endpoints_refuse_others,
    openapi_documents_the_nodes_api,
);
