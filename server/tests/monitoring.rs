//! Monitoring's storage and statistics on SQLite and PostgreSQL: minute buckets older than a day fold into
//! quarter hours (sample-weighted means) and are deleted, quarters older than a week into hours, hours
//! older than 90 days go; the REST API serves a node's series, pool history, liveness and the
//! provisioning statistics; the nodes' reliability and recent failures follow their pool history.

mod common;

use chrono::{DateTime, TimeDelta, Utc};
use common::TestApp;
use portolan_core::db::entity::{NodePool, node, sliver_attempt};
use portolan_core::liveness::{monitor, pools, stats};
use portolan_core::nodes::sync;
use portolan_core::testbed::{NodeRecord, SiteRecord};
use reqwest::StatusCode;
use sea_orm::{ActiveModelTrait, EntityTrait, Set};
use std::collections::BTreeMap;

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 / 3600 * 3600, 0).unwrap()
}

async fn one_node(app: &TestApp, at: DateTime<Utc>) -> i64 {
    let site = SiteRecord {
        site_id: 1,
        login_base: "alpha".into(),
        name: "Alpha".into(),
        enabled: true,
        max_slices: None,
        latitude: None,
        longitude: None,
    };
    let record = NodeRecord {
        node_id: 1,
        hostname: "a1.alpha.edu".into(),
        site_id: 1,
        boot_state: "boot".into(),
        ip: Some("10.0.0.1".into()),
        host_key: Some("ssh-ed25519 KEY1".into()),
        last_contact: None,
        tags: BTreeMap::new(),
    };
    sync::apply(&app.db, at, &[site], &[record]).await.unwrap();
    common::scalar(&app.db, "SELECT CAST(id AS BIGINT) FROM nodes").await
}

fn minute(node_id: i64, at: DateTime<Utc>, samples: i32, load: Option<f64>) -> monitor::Bucket {
    monitor::Bucket {
        node_id,
        width_s: 60,
        at,
        samples,
        load,
        memory_total_mb: Some(1000.0),
        memory_free_mb: Some(500.0),
        disk_free_pct: None,
        net_rx_bps: None,
        net_tx_bps: None,
    }
}

async fn buckets_fold_into_coarser_ones_and_expire(app: TestApp) {
    let id = one_node(&app, now() - TimeDelta::days(100)).await;
    let old = now() - TimeDelta::days(2);
    let quarter = monitor::bucket_of(old, 900);
    let rows = vec![
        minute(id, quarter, 1, Some(1.0)),
        minute(id, quarter + TimeDelta::minutes(1), 3, Some(3.0)),
        minute(id, quarter + TimeDelta::minutes(2), 2, None),
        // Recent: stays a minute.
        minute(id, now() - TimeDelta::minutes(5), 1, Some(9.0)),
    ];
    monitor::merge(&app.db, &rows).await.unwrap();
    // Merging into an existing bucket averages by samples.
    monitor::merge(&app.db, &[minute(id, now() - TimeDelta::minutes(5), 3, Some(1.0))]).await.unwrap();
    // A very old hour expires; an old quarter becomes an hour.
    let mut ancient = minute(id, now() - TimeDelta::days(91), 4, Some(5.0));
    ancient.width_s = 3600;
    let mut old_quarter = minute(id, monitor::bucket_of(now() - TimeDelta::days(8), 3600), 2, Some(4.0));
    old_quarter.width_s = 900;
    monitor::merge(&app.db, &[ancient, old_quarter]).await.unwrap();

    let before = common::scalar(&app.db, "SELECT COUNT(*) FROM node_metrics WHERE width_s = 3600").await;
    assert_eq!(before, 1, "the ancient hour is stored");
    let done = monitor::downsample(&app.db, now()).await.unwrap();
    assert_eq!(done.folded, 4, "three minutes and one quarter");
    assert_eq!(done.expired, 1);
    // Three days back: quarters (the finest kept that far); thirty days back: hours.
    let series = monitor::series(&app.db, id, now() - TimeDelta::days(3), now()).await.unwrap();
    let quarters: Vec<_> = series.iter().filter(|b| b.width_s == 900).collect();
    assert_eq!(quarters.len(), 1);
    assert_eq!(quarters[0].at, quarter);
    assert_eq!(quarters[0].samples, 6);
    assert_eq!(quarters[0].load, Some(2.5), "(1·1 + 3·3) / 4");
    assert_eq!(quarters[0].memory_free_mb, Some(500.0));
    let series = monitor::series(&app.db, id, now() - TimeDelta::days(30), now()).await.unwrap();
    assert!(series.iter().all(|b| b.width_s == 3600));
    let hours: Vec<_> = series.iter().filter(|b| b.width_s == 3600).collect();
    assert_eq!(hours.len(), 1);
    assert_eq!(hours[0].load, Some(4.0));
    let recent = monitor::series(&app.db, id, now() - TimeDelta::hours(1), now()).await.unwrap();
    assert_eq!(recent.len(), 1);
    assert_eq!((recent[0].samples, recent[0].load), (4, Some(3.0)), "(9·1 + 1·3) / 4");
    // Again: nothing left to fold.
    assert_eq!(monitor::downsample(&app.db, now()).await.unwrap(), monitor::Downsampled::default());

    // Over REST, as a logged-in user.
    let browser = app.user("ada@example.org").await;
    let since = (now() - TimeDelta::hours(1)).to_rfc3339();
    let url = format!("/nodes/{id}/metrics?since={}", urlencode(&since));
    let (status, body) = app.get(&browser, &url, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body.as_array().unwrap().len(), 1);
    assert_eq!(body[0]["load"], 3.0);
    let (status, _) = app.get(&browser, "/nodes/999999/metrics", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = app.get(&browser, &format!("/nodes/{id}/metrics?since=yesterday"), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

fn urlencode(text: &str) -> String {
    text.replace('+', "%2B").replace(':', "%3A")
}

async fn statistics_follow_the_records(app: TestApp) {
    let t = Utc::now();
    let id = one_node(&app, t - TimeDelta::days(8)).await;
    // Free two days ago, down for a day, free again: 6 of 7 days (since the week began) free, one failure.
    let db = &app.db;
    pools::check_passed(db, id, "service sliver up end to end", t - TimeDelta::days(7)).await.unwrap();
    pools::check_failed(db, id, "service sliver silent", t - TimeDelta::days(2)).await.unwrap();
    pools::check_passed(db, id, "service sliver up end to end", t - TimeDelta::days(1)).await.unwrap();
    assert_eq!(stats::refresh_reliability(db, t).await.unwrap(), 1);
    let n = node::Entity::find_by_id(id).one(db).await.unwrap().unwrap();
    assert_eq!(n.pool, NodePool::Free);
    assert!((n.reliability - 6.0 / 7.0).abs() < 0.002, "{}", n.reliability);
    assert_eq!(n.recent_failures, 1);
    assert_eq!(stats::refresh_reliability(db, t).await.unwrap(), 0, "unchanged: nothing written");

    for (seconds, failed) in [(10.0, None), (20.0, None), (30.0, Some("connect")), (40.0, None)] {
        sliver_attempt::ActiveModel {
            sliver_id: Set(1),
            node_id: Set(id),
            site_id: Set(n.site_id),
            kind: Set("service".into()),
            generation: Set("node-manager".into()),
            started_at: Set(t - TimeDelta::minutes(5)),
            finished_at: Set(t - TimeDelta::minutes(1)),
            seconds: Set(seconds),
            failed_step: Set(failed.map(str::to_owned)),
            class: Set(failed.map(|_| "retryable".to_owned())),
            error: Set(failed.map(|_| "refused".to_owned())),
            ..Default::default()
        }
        .insert(db)
        .await
        .unwrap();
    }
    let browser = app.user("ada@example.org").await;
    let (status, body) = app.get(&browser, "/provisioning/stats", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["overall"]["attempts"], 4);
    assert_eq!(body["overall"]["failures"], 1);
    assert_eq!(body["overall"]["p50_s"], 20.0);
    assert_eq!(body["overall"]["p99_s"], 40.0);
    let connect = body["steps"].as_array().unwrap().iter().find(|s| s["step"] == "connect").unwrap().clone();
    assert_eq!((connect["reached"].as_u64(), connect["failed"].as_u64()), (Some(4), Some(1)));
    let install = body["steps"].as_array().unwrap().iter().find(|s| s["step"] == "install").unwrap().clone();
    assert_eq!(install["reached"], 3, "the failed one never got there");
    assert_eq!(body["by_generation"][0]["group"], "node-manager");
    assert_eq!(body["by_site"][0]["group"], "alpha");

    let (status, body) = app.get(&browser, &format!("/nodes/{id}/liveness"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["pool"], "free");
    assert_eq!(body["lifetime"]["failures_week"], 1);
    assert_eq!(body["lifetime"]["attempts"], 4);
    assert_eq!(body["lifetime"]["successes"], 3);
    let (status, history) = app.get(&browser, &format!("/nodes/{id}/pool-history"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(history[0]["to"], "free", "newest first");
    assert_eq!(history[1]["reason"], "service sliver silent");
    let (status, points) = app.get(&browser, "/pools/history", None).await;
    assert_eq!(status, StatusCode::OK);
    let points = points.as_array().unwrap();
    assert_eq!(points.len(), 48);
    assert_eq!(points.last().unwrap()["free"], 1);

    // Re-testing is for operators.
    let (status, body) = app.post(&browser, &format!("/nodes/{id}/retest"), None, common::no_body()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, queue) = app.get(&browser, "/liveness/queue", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(queue[0]["node_id"], id);
}

on_both_databases!(buckets_fold_into_coarser_ones_and_expire, statistics_follow_the_records);
