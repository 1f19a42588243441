//! The agents' API over real HTTP, on SQLite and PostgreSQL: a sliver credential and nothing else opens it;
//! a first heartbeat brings a service sliver up end to end (attempt recorded, node free); later ones are
//! written in batches (sliver, node metrics, the minute series); bad input is a clear 4xx that stores
//! nothing; the manifest carries the operators' keys and its version follows them.

mod common;

use chrono::{DateTime, Utc};
use common::TestApp;
use portolan_agent::protocol::{Credential, Heartbeat, Metrics, StartupState};
use portolan_core::db::entity::{Health, NodePool, SliverKind, SliverStep, node, sliver};
use portolan_core::nodes::sync;
use portolan_core::slivers::storage;
use portolan_core::testbed::{NodeRecord, SiteRecord};
use reqwest::StatusCode;
use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, Set};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

const SLICE: &str = "alpha_portolan";
const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPI+DjeFyvcJhwoBHObkxNxeuORd3QSsOorXq16R8qpd ada@lab";

fn now() -> DateTime<Utc> {
    Utc::now()
}

async fn seeded(app: &TestApp) -> (i64, i64) {
    let site = SiteRecord {
        site_id: 1,
        login_base: "alpha".into(),
        name: "Alpha".into(),
        enabled: true,
        max_slices: None,
        latitude: None,
        longitude: None,
    };
    let record = |id: i32, host: &str| NodeRecord {
        node_id: id,
        hostname: host.into(),
        site_id: 1,
        boot_state: "boot".into(),
        ip: Some(format!("10.0.0.{id}")),
        host_key: Some(format!("ssh-ed25519 KEY{id}")),
        last_contact: None,
        tags: BTreeMap::new(),
    };
    sync::apply(&app.db, now(), &[site], &[record(1, "a1.alpha.edu"), record(2, "a2.alpha.edu")])
        .await
        .unwrap();
    let id = |host: &'static str| async move {
        common::scalar(&app.db, &format!("SELECT CAST(id AS BIGINT) FROM nodes WHERE hostname = '{host}'"))
            .await
    };
    (id("a1.alpha.edu").await, id("a2.alpha.edu").await)
}

/// A service sliver on `node_id` at `step`, with a fresh credential (what bring-up leaves behind).
async fn sliver_at(app: &TestApp, node_id: i64, step: SliverStep, health: Health) -> (i64, Credential) {
    let row = storage::ensure(&app.db, SliverKind::Service, SLICE, node_id, now()).await.unwrap();
    let credential = Credential::generate(row.id);
    let mut active = row.into_active_model();
    active.step = Set(step);
    active.health = Set(health);
    active.attempt_started_at = Set(Some(now()));
    active.credential_hash = Set(Some(credential.secret_hash()));
    let row = active.update(&app.db).await.unwrap();
    (row.id, credential)
}

fn beat(host: &str, load: f64) -> Heartbeat {
    Heartbeat {
        slice: SLICE.into(),
        node: host.into(),
        sequence: 1,
        agent_version: "test".into(),
        manifest_version: None,
        manifest_error: None,
        startup: StartupState::None,
        metrics: Metrics {
            load1: Some(load),
            memory_total_mb: Some(2048.0),
            memory_free_mb: Some(1024.0),
            disk_free_pct: Some(40.0),
            net_rx_bytes: Some(1000),
            net_tx_bytes: Some(2000),
        },
    }
}

async fn send(app: &TestApp, credential: Option<&str>, body: Value) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().post(app.url("/agent/v1/heartbeat")).json(&body);
    if let Some(c) = credential {
        request = request.bearer_auth(c);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    for _ in 0..100 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn first_heartbeat_brings_the_node_up_and_later_ones_are_batched(app: TestApp) {
    let (node_id, _) = seeded(&app).await;
    let (sliver_id, credential) = sliver_at(&app, node_id, SliverStep::Heartbeat, Health::Booting).await;
    let (status, reply) = send(&app, Some(&credential.expose()), json!(beat("a1.alpha.edu", 0.5))).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["heartbeat_s"], 30);
    assert_eq!(reply["manifest_version"].as_str().unwrap().len(), 32);

    let row = sliver::Entity::find_by_id(sliver_id).one(&app.db).await.unwrap().unwrap();
    assert_eq!((row.step, row.health), (SliverStep::Ready, Health::Up), "up end to end at once");
    let node = node::Entity::find_by_id(node_id).one(&app.db).await.unwrap().unwrap();
    assert_eq!(node.pool, NodePool::Free);
    assert_eq!(node.check_successes, 1);
    assert!(node.due_at.is_some(), "a healthy node is re-checked later");
    assert_eq!(app.count("sliver_attempts").await, 1);
    let failed =
        common::scalar(&app.db, "SELECT COUNT(*) FROM sliver_attempts WHERE failed_step IS NOT NULL").await;
    assert_eq!(failed, 0);
    let to_free = common::scalar(&app.db, "SELECT COUNT(*) FROM pool_events WHERE to_pool = 'free'").await;
    assert_eq!(to_free, 1);

    // The next ones go through the batched writer.
    for load in [1.0, 2.0] {
        let (status, _) = send(&app, Some(&credential.expose()), json!(beat("a1.alpha.edu", load))).await;
        assert_eq!(status, StatusCode::OK);
    }
    wait_for("the batch to be written", async || {
        let row = sliver::Entity::find_by_id(sliver_id).one(&app.db).await.unwrap().unwrap();
        row.heartbeats >= 3
    })
    .await;
    let node = node::Entity::find_by_id(node_id).one(&app.db).await.unwrap().unwrap();
    assert_eq!(node.load, Some(2.0), "the latest load feeds admission and the mapper");
    assert_eq!(node.memory_free_mb, Some(1024.0));
    assert_eq!(node.disk_free_pct, Some(40.0));
    assert!(node.metrics_at.is_some());
    let minutes = common::scalar(&app.db, "SELECT COUNT(*) FROM node_metrics WHERE width_s = 60").await;
    assert!((1..=2).contains(&minutes), "one bucket per minute, {minutes} rows");
}

async fn bad_heartbeats_are_refused_and_store_nothing(app: TestApp) {
    let (node_id, other_node) = seeded(&app).await;
    let (sliver_id, credential) = sliver_at(&app, node_id, SliverStep::Ready, Health::Up).await;
    let (_, other) = sliver_at(&app, other_node, SliverStep::Ready, Health::Up).await;
    let good = json!(beat("a1.alpha.edu", 0.5));
    let mut cases: Vec<(&str, Option<String>, Value, StatusCode)> = vec![
        ("no credential", None, good.clone(), StatusCode::UNAUTHORIZED),
        ("malformed credential", Some("pslv_nonsense".into()), good.clone(), StatusCode::UNAUTHORIZED),
        ("an API token is no credential", Some("ptok_abc".into()), good.clone(), StatusCode::UNAUTHORIZED),
        (
            "unknown sliver",
            Some(Credential::generate(sliver_id + 100).expose()),
            good.clone(),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "wrong secret",
            Some(Credential::generate(sliver_id).expose()),
            good.clone(),
            StatusCode::UNAUTHORIZED,
        ),
        ("another node's sliver", Some(other.expose()), good.clone(), StatusCode::FORBIDDEN),
        ("malformed body", Some(credential.expose()), json!({"slice": SLICE}), StatusCode::BAD_REQUEST),
        (
            "implausible load",
            Some(credential.expose()),
            json!(beat("a1.alpha.edu", -1.0)),
            StatusCode::BAD_REQUEST,
        ),
    ];
    let mut other_slice = beat("a1.alpha.edu", 0.5);
    other_slice.slice = "beta_experiment".into();
    cases.push(("another slice", Some(credential.expose()), json!(other_slice), StatusCode::FORBIDDEN));
    let mut huge = beat("a1.alpha.edu", 0.5);
    huge.manifest_error = Some("x".repeat(20_000));
    cases.push(("oversized", Some(credential.expose()), json!(huge), StatusCode::PAYLOAD_TOO_LARGE));
    for (what, credential, body, expected) in cases {
        let (status, error) = send(&app, credential.as_deref(), body).await;
        assert_eq!(status, expected, "{what}: {error}");
        assert!(error["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {error}");
        if what == "implausible load" {
            assert_eq!(error["error"]["field"], "metrics.load1");
            insta::assert_json_snapshot!("agent_implausible_load", error);
        }
        if what == "another node's sliver" {
            insta::assert_json_snapshot!("agent_other_node", error);
        }
    }
    // Nothing reached the store, even after the writer's interval.
    tokio::time::sleep(portolan_core::slivers::ingest::FLUSH_EVERY * 3).await;
    let stored = common::scalar(&app.db, "SELECT CAST(SUM(heartbeats) AS BIGINT) FROM slivers").await;
    assert_eq!(stored, 0);
    assert_eq!(app.count("node_metrics").await, 0);
    let loads = common::scalar(&app.db, "SELECT COUNT(*) FROM nodes WHERE load IS NOT NULL").await;
    assert_eq!(loads, 0);

    // A credential replaced by a new bring-up stops working.
    let replaced = Credential::generate(sliver_id);
    let mut active =
        sliver::Entity::find_by_id(sliver_id).one(&app.db).await.unwrap().unwrap().into_active_model();
    active.credential_hash = Set(Some(replaced.secret_hash()));
    active.update(&app.db).await.unwrap();
    tokio::time::sleep(portolan_core::slivers::agent_api::AUTH_TTL + Duration::from_millis(200)).await;
    let response = reqwest::Client::new()
        .get(app.url("/agent/v1/manifest"))
        .bearer_auth(credential.expose())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = reqwest::Client::new()
        .get(app.url("/agent/v1/manifest"))
        .bearer_auth(replaced.expose())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

async fn the_manifest_carries_the_operators_keys(app: TestApp) {
    let (node_id, _) = seeded(&app).await;
    let (_, credential) = sliver_at(&app, node_id, SliverStep::Ready, Health::Up).await;
    let manifest = || async {
        let response = reqwest::Client::new()
            .get(app.url("/agent/v1/manifest"))
            .bearer_auth(credential.expose())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json::<Value>().await.unwrap()
    };
    let before = manifest().await;
    assert_eq!(before["slice"], SLICE);
    assert_eq!(before["node"], "a1.alpha.edu");
    assert_eq!(before["accounts"], json!([]));

    let operator = app.user("op@example.org").await;
    set_operator(&app, "op@example.org").await;
    let (status, body) = app.call(&operator, "add_key", &[("public_key", KEY)]).await;
    assert!(status.is_success(), "{status} {body}");
    tokio::time::sleep(portolan_core::slivers::agent_api::MANIFEST_TTL + Duration::from_millis(200)).await;
    let after = manifest().await;
    assert_ne!(after["version"], before["version"]);
    assert_eq!(after["accounts"][0]["name"], "op@example.org");
    let sent = after["accounts"][0]["keys"][0].as_str().unwrap();
    assert!(KEY.starts_with(sent.trim()) || sent.starts_with(&KEY[..80]), "{sent}");
}

async fn set_operator(app: &TestApp, email: &str) {
    let clock = portolan_core::clock::Clock::real();
    portolan_core::accounts::set_operator(&app.db, &clock, email, true).await.unwrap();
}

on_both_databases!(
    first_heartbeat_brings_the_node_up_and_later_ones_are_batched,
    bad_heartbeats_are_refused_and_store_nothing,
    the_manifest_carries_the_operators_keys,
);
