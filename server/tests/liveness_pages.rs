//! The liveness and monitoring pages as the server renders them (no JavaScript), over real HTTP, on SQLite
//! and PostgreSQL: a node's page shows its pool history, availability, MTBF, set-up success, service sliver
//! and an SVG chart of the metrics its heartbeats reported (with gaps); the nodes page plots the pools over
//! the week; the operators' page lists the re-test queue with "re-test now" and the provisioning
//! statistics. Re-testing is the operators' and a POST: anyone else is refused by the server function.
//!
//! The nodes come from discovery's own `sync::apply`, their pool changes from liveness's own
//! `pools::check_*`, their metrics from real heartbeats on `/agent/v1/heartbeat` plus older minute buckets
//! merged the way the heartbeat writer merges them.

mod common;

use chrono::{DateTime, TimeDelta, Utc};
use common::TestApp;
use portolan_agent::protocol::{Credential, Heartbeat, Metrics, StartupState};
use portolan_core::db::entity::{Health, NodePool, SliverKind, SliverStep, node, sliver, sliver_attempt};
use portolan_core::liveness::{monitor, pools};
use portolan_core::nodes::sync;
use portolan_core::slivers::storage;
use portolan_core::testbed::{NodeRecord, SiteRecord};
use reqwest::{Client, StatusCode};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, Set};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

const SLICE: &str = "alpha_portolan";
/// What a failed bring-up records as the pool change's reason.
const FAILED_AT_INSTALL: &str = "service sliver failed at install: cannot copy the agent: connection reset";

/// The seeded nodes: `up` heartbeating (free, once down for six hours), `broken` down after a failed
/// bring-up, `gone` left the testbed.
struct Seeded {
    up: i64,
    broken: i64,
    gone: i64,
}

fn record(id: i32, host: &str) -> NodeRecord {
    NodeRecord {
        node_id: id,
        hostname: host.into(),
        site_id: 1,
        boot_state: "boot".into(),
        ip: Some(format!("10.0.0.{id}")),
        host_key: Some(format!("ssh-ed25519 KEY{id}")),
        last_contact: None,
        tags: BTreeMap::new(),
    }
}

async fn node_id(app: &TestApp, host: &str) -> i64 {
    common::scalar(&app.db, &format!("SELECT CAST(id AS BIGINT) FROM nodes WHERE hostname = '{host}'")).await
}

/// Discovered two days ago; `up`: free an hour later, down for six hours half a day ago, then heartbeating
/// (one bring-up, which came up); `broken`: down after its bring-ups failed at `install` (its attempt is
/// recorded by [`failed_bring_up`]).
async fn seeded(app: &TestApp, now: DateTime<Utc>) -> Seeded {
    let site = SiteRecord {
        site_id: 1,
        login_base: "alpha".into(),
        name: "Alpha".into(),
        enabled: true,
        max_slices: None,
        latitude: None,
        longitude: None,
    };
    let first_seen = now - TimeDelta::days(2);
    let records = [record(1, "a1.alpha.edu"), record(2, "a2.alpha.edu"), record(3, "a3.alpha.edu")];
    sync::apply(&app.db, first_seen, &[site], &records).await.unwrap();
    let seeded = Seeded {
        up: node_id(app, "a1.alpha.edu").await,
        broken: node_id(app, "a2.alpha.edu").await,
        gone: node_id(app, "a3.alpha.edu").await,
    };
    let txn = portolan_core::db::begin_writing(&app.db).await.unwrap();
    let hours = TimeDelta::hours;
    pools::check_passed(&txn, seeded.up, "service sliver up end to end", first_seen + hours(1))
        .await
        .unwrap();
    pools::check_failed(&txn, seeded.up, "service sliver silent for over 120 s", now - hours(12))
        .await
        .unwrap();
    pools::check_passed(&txn, seeded.up, "service sliver heartbeats again", now - hours(6)).await.unwrap();
    // Four failures in a row: re-tested only in 4²·5 min, after `up`'s next check.
    for minutes in (1..=4).rev() {
        let at = now - TimeDelta::minutes(minutes);
        pools::check_failed(&txn, seeded.broken, FAILED_AT_INSTALL, at).await.unwrap();
    }
    txn.commit().await.unwrap();
    node::Entity::update_many()
        .col_expr(node::Column::Pool, Expr::value(NodePool::Gone))
        .filter(node::Column::Id.eq(seeded.gone))
        .exec(&app.db)
        .await
        .unwrap();
    seeded
}

/// `up`'s service sliver heartbeats three times (the first brings it up end to end); half an hour earlier
/// it reported for ten minutes, once without a load. Answers how many minute buckets the heartbeats filled
/// (two when they straddled a minute's end).
async fn heartbeats(app: &TestApp, node_id: i64, now: DateTime<Utc>) -> usize {
    let row = storage::ensure(&app.db, SliverKind::Service, SLICE, node_id, now).await.unwrap();
    let credential = Credential::generate(row.id);
    let mut active = row.into_active_model();
    active.step = Set(SliverStep::Heartbeat);
    active.health = Set(Health::Booting);
    active.attempt_started_at = Set(Some(now - TimeDelta::seconds(95)));
    active.credential_hash = Set(Some(credential.secret_hash()));
    let row = active.update(&app.db).await.unwrap();
    for load in [0.5, 1.0, 2.0] {
        let beat = Heartbeat {
            slice: SLICE.into(),
            node: "a1.alpha.edu".into(),
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
        };
        let response = Client::new()
            .post(app.url("/agent/v1/heartbeat"))
            .bearer_auth(credential.expose())
            .json(&beat)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    for _ in 0..100 {
        let stored = sliver::Entity::find_by_id(row.id).one(&app.db).await.unwrap().unwrap();
        if stored.heartbeats >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let start = monitor::bucket_of(now - TimeDelta::minutes(30), 60);
    let older: Vec<monitor::Bucket> = (0..10)
        .map(|i| monitor::Bucket {
            node_id,
            width_s: 60,
            at: start + TimeDelta::minutes(i),
            samples: 2,
            load: (i != 5).then_some(0.2 + 0.1 * i as f64),
            memory_total_mb: Some(2048.0),
            memory_free_mb: Some(900.0 + 10.0 * i as f64),
            disk_free_pct: Some(41.0),
            net_rx_bps: Some(5000.0 + 100.0 * i as f64),
            net_tx_bps: Some(3000.0),
        })
        .collect();
    let txn = portolan_core::db::begin_writing(&app.db).await.unwrap();
    monitor::merge(&txn, &older).await.unwrap();
    txn.commit().await.unwrap();
    let recent = monitor::series(&app.db, node_id, now - TimeDelta::minutes(5), Utc::now()).await.unwrap();
    assert!((1..=2).contains(&recent.len()), "{recent:?}");
    recent.len()
}

/// `broken`'s service sliver: its bring-up failed at `install`, and the attempt is recorded.
async fn failed_bring_up(app: &TestApp, node_id: i64, now: DateTime<Utc>) {
    let row = storage::ensure(&app.db, SliverKind::Service, SLICE, node_id, now).await.unwrap();
    let mut active = row.clone().into_active_model();
    active.health = Set(Health::Down);
    active.last_error = Set(Some("cannot copy the agent: connection reset".into()));
    active.error_step = Set(Some("install".into()));
    active.error_class = Set(Some("retryable".into()));
    active.update(&app.db).await.unwrap();
    let site_id = node::Entity::find_by_id(node_id).one(&app.db).await.unwrap().unwrap().site_id;
    sliver_attempt::ActiveModel {
        sliver_id: Set(row.id),
        node_id: Set(node_id),
        site_id: Set(site_id),
        kind: Set("service".into()),
        generation: Set("node-manager".into()),
        started_at: Set(now - TimeDelta::hours(1) - TimeDelta::minutes(2)),
        finished_at: Set(now - TimeDelta::hours(1)),
        seconds: Set(120.0),
        failed_step: Set(Some("install".into())),
        class: Set(Some("retryable".into())),
        error: Set(Some("cannot copy the agent: connection reset".into())),
        ..Default::default()
    }
    .insert(&app.db)
    .await
    .unwrap();
}

async fn page(app: &TestApp, client: &Client, path: &str) -> (StatusCode, String) {
    let response = client.get(app.url(path)).send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

/// The text from `marker` on, up to its element's end (for looking inside one attribute list or cell).
fn after<'a>(html: &'a str, marker: &str) -> &'a str {
    let start = html.find(marker).unwrap_or_else(|| panic!("{marker} in {html}"));
    let rest = &html[start..];
    &rest[..rest.find('<').map_or(rest.len(), |i| i.max(1))]
}

fn assert_shows(html: &str, shown: &[&str]) {
    for s in shown {
        assert!(html.contains(s), "{s} in {html}");
    }
}

async fn a_nodes_page_shows_its_liveness_and_charts_its_metrics(app: TestApp) {
    let now = Utc::now();
    let nodes = seeded(&app, now).await;
    let recent = heartbeats(&app, nodes.up, now).await;
    failed_bring_up(&app, nodes.broken, now).await;
    let ada = app.user("ada@example.org").await;

    let (status, html) = page(&app, &ada, &format!("/nodes/{}", nodes.up)).await;
    assert_eq!(status, StatusCode::OK);
    assert_shows(
        &html,
        &[
            r#"data-testid="liveness""#,
            // Free 12 of the last 24 hours before the failure, and the 6 since: 75 %; over the 47 hours
            // since its first check, 41 (35 + 6): 87.2 %, one failure, so MTBF 41 h.
            r#"data-testid="availability-day">75.0 %<"#,
            r#"data-testid="availability-week">87.2 %<"#,
            r#"data-testid="mtbf">41.0 h (1 failure)<"#,
            r#"data-testid="setup-success">1/1 (100.0 %)<"#,
            r#"data-testid="check-failures">0<"#,
            r#"data-testid="sliver-step">ready<"#,
            r#"data-testid="sliver-health">up<"#,
            r#"data-testid="heartbeats">3<"#,
            r#"data-testid="sliver-error">none<"#,
            "service sliver silent for over 120 s",
        ],
    );
    // The pool history, newest first.
    let positions: Vec<usize> = ["down → free", "free → down", "new → free"]
        .iter()
        .map(|change| html.find(change).unwrap_or_else(|| panic!("{change} in {html}")))
        .collect();
    assert!(positions.is_sorted(), "newest first: {positions:?}");
    assert!(!after(&html, r#"data-testid="next-check">"#).contains("not scheduled"), "{html}");

    // The chart: an SVG per metric, drawn on the server. The load's unknown minute and the 20 minutes
    // without heartbeats split its line: two polylines, then the heartbeats' minute as a dot (or a third
    // polyline, when they straddled a minute's end); the memory's line splits only at the hole.
    assert_shows(&html, &[r#"data-testid="metrics-chart""#, "<svg", "<polyline"]);
    let (lines, dots) = if recent == 1 { (2, 1) } else { (3, 0) };
    for (plot, polylines) in [("load", lines), ("memory", lines - 1), ("disk", lines - 1)] {
        let svg = after(&html, &format!(r#"data-testid="plot-{plot}""#));
        assert!(svg.contains(&format!(r#"data-polylines="{polylines}""#)), "{plot}: {svg}");
    }
    let load = &html[html.find(r#"data-testid="plot-load""#).unwrap()..];
    let load = &load[..load.find("</svg>").unwrap()];
    assert_eq!(load.matches("<polyline").count(), lines, "{load}");
    assert_eq!(load.matches("<circle").count(), dots, "{load}");
    assert!(load.contains(">0.2<"), "the y scale is labelled with its minimum: {load}");
    assert!(!html.contains(r#"data-testid="no-metrics""#));

    // A node whose bring-up failed: the error with its step and class, no metrics yet.
    let (status, html) = page(&app, &ada, &format!("/nodes/{}", nodes.broken)).await;
    assert_eq!(status, StatusCode::OK);
    assert_shows(
        &html,
        &[
            "new → down",
            FAILED_AT_INSTALL,
            r#"data-testid="availability-day">0.0 %<"#,
            "cannot copy the agent: connection reset</span>",
            " (at install, retryable)",
            r#"data-testid="check-failures">4<"#,
            r#"data-testid="setup-success">0/1 (0.0 %)<"#,
            r#"data-testid="no-metrics""#,
        ],
    );
    assert!(!html.contains(r#"data-testid="metrics-chart""#));

    // The nodes page plots the pools over the week: one line each for free, down, new and held.
    let (status, html) = page(&app, &ada, "/nodes").await;
    assert_eq!(status, StatusCode::OK);
    let plot = after(&html, r#"data-testid="pool-history-plot""#);
    assert!(plot.contains(r#"data-polylines="4""#), "{plot}");
    assert_shows(&html, &["Nodes per pool, last week", r#"class="line free""#]);

    // Visitors are asked to log in, and the functions refuse them.
    let (status, _) = page(&app, &app.browser(), &format!("/nodes/{}", nodes.up)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let id = nodes.up.to_string();
    for (name, form) in [
        ("get_node_liveness", vec![("id", id.as_str())]),
        ("get_node_metrics", vec![("id", id.as_str())]),
        ("pool_counts_history", vec![]),
        ("retest_queue", vec![]),
        ("get_provisioning_stats", vec![]),
    ] {
        let (status, body) = app.call(&app.browser(), name, &form).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}: {body}");
        let (status, body) = app.call(&ada, name, &form).await;
        assert_eq!(status, StatusCode::OK, "{name}: {body}");
    }
    for name in ["get_node_liveness", "get_node_metrics"] {
        let (status, body) = app.call(&ada, name, &[("id", "999999")]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{name}: {body}");
    }
    let (_, metrics) = app.call(&ada, "get_node_metrics", &[("id", id.as_str())]).await;
    assert_eq!(metrics["points"].as_array().map(Vec::len), Some(10 + recent), "{metrics}");
}

/// The operators' page: the queue with a button per node, the provisioning statistics; "re-test now" makes
/// a node due at once, for operators only, by POST only.
async fn operators_retest_from_the_queue_and_see_provisioning(app: TestApp) {
    let now = Utc::now();
    let nodes = seeded(&app, now).await;
    heartbeats(&app, nodes.up, now).await;
    failed_bring_up(&app, nodes.broken, now).await;
    let first_in_queue = |html: &str| {
        let at = html.find("data-node=").unwrap_or_else(|| panic!("a queue row in {html}"));
        html[at..].split('"').nth(1).and_then(|id| id.parse::<i64>().ok())
    };

    // Anyone else: no queue, no button, and the server function refuses them.
    let ada = app.user("ada@example.org").await;
    let (status, html) = page(&app, &ada, "/operators").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Operators only") && !html.contains("Re-test now"), "{html}");
    let broken = nodes.broken.to_string();
    let (status, body) = app.call(&ada, "retest_node", &[("id", &broken)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = app.call(&app.browser(), "retest_node", &[("id", &broken)]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let due = || async { node::Entity::find_by_id(nodes.broken).one(&app.db).await.unwrap().unwrap().due_at };
    let before = due().await.expect("a down node has its next test");
    assert!(before > now + TimeDelta::minutes(60), "after four failures: in 80 minutes ({before})");

    let ops = app.user("ops@example.org").await;
    portolan_core::accounts::set_operator(
        &app.db,
        &portolan_core::clock::Clock::real(),
        "ops@example.org",
        true,
    )
    .await
    .unwrap();
    let (status, html) = page(&app, &ops, "/operators").await;
    assert_eq!(status, StatusCode::OK);
    assert_shows(
        &html,
        &[
            r#"data-testid="retest-queue""#,
            &format!(r#"<a href="/nodes/{}">a1.alpha.edu</a>"#, nodes.up),
            &format!(r#"<a href="/nodes/{}">a2.alpha.edu</a>"#, nodes.broken),
            "Re-test now",
            r#"<input type="hidden" name="id""#,
            r#"data-testid="provisioning-steps""#,
            r#"data-testid="provisioning-generations""#,
            r#"data-testid="provisioning-sites""#,
            r#"data-testid="provisioning-days""#,
            "node-manager",
            ">50.0 %<",
        ],
    );
    assert!(!html.contains("a3.alpha.edu"), "a gone node is not in the queue");
    assert_eq!(first_in_queue(&html), Some(nodes.up), "soonest first: `up`'s check comes before");
    // Per step: both attempts reached `install`, one failed there; only the other reached `start`.
    let steps = &html[html.find(r#"data-testid="provisioning-steps""#).unwrap()..];
    let install = &steps[steps.find(">install<").unwrap()..];
    assert!(install.starts_with(">install</td><td>2</td><td>1</td><td>50.0 %</td>"), "{install}");

    // Cross-site, or by GET: refused, nothing changes.
    let (status, _) = {
        let response = ops
            .post(app.url("/sf/retest_node"))
            .header("Sec-Fetch-Site", "cross-site")
            .form(&[("id", &broken)])
            .send()
            .await
            .unwrap();
        (response.status(), ())
    };
    assert_eq!(status, StatusCode::FORBIDDEN);
    let status = ops.get(app.url(&format!("/sf/retest_node?id={broken}"))).send().await.unwrap().status();
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(due().await, Some(before));

    // Re-test now: due at once, first in the queue.
    let (status, body) = app.call(&ops, "retest_node", &[("id", &broken)]).await;
    assert_eq!((status, &body), (StatusCode::OK, &Value::Null), "{body}");
    let after_retest = due().await.unwrap();
    assert!((after_retest - Utc::now()).num_seconds().abs() < 30, "due now: {after_retest}");
    let (_, html) = page(&app, &ops, "/operators").await;
    assert_eq!(first_in_queue(&html), Some(nodes.broken));
    let (status, queue) = app.call(&ops, "retest_queue", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(queue[0]["node_id"], json!(nodes.broken), "{queue}");

    // Only nodes the checks move; only nodes that exist.
    let (status, body) = app.call(&ops, "retest_node", &[("id", &nodes.gone.to_string())]).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = app.call(&ops, "retest_node", &[("id", "999999")]).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = app.call(&ops, "retest_node", &[("id", "x")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

on_both_databases!(
    a_nodes_page_shows_its_liveness_and_charts_its_metrics,
    operators_retest_from_the_queue_and_see_provisioning,
);
