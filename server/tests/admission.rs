//! Admission thresholds change what the mapper may use, on SQLite and PostgreSQL: through the stored
//! thresholds of the live world (`portolan map --from-db` and the "what if" counts), with unknown metrics
//! never passing a threshold that needs them; bad values are refused naming the field and change nothing.

mod common;

use chrono::{DateTime, Utc};
use common::TestApp;
use model::nodes::AdmissionView;
use portolan_core::{
    auth::{Caller, Via},
    mapper::{Policy, map},
    nodes::{admission, sync, world},
    testbed::{NodeRecord, SiteRecord},
};
use std::collections::BTreeMap;
use std::process::Command;

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap()
}

fn site(id: i32, base: &str) -> SiteRecord {
    SiteRecord {
        site_id: id,
        login_base: base.into(),
        name: base.to_uppercase(),
        enabled: true,
        max_slices: Some(10),
        latitude: None,
        longitude: None,
    }
}

fn node(id: i32, host: &str, site_id: i32, class: &str, booted: bool) -> NodeRecord {
    NodeRecord {
        node_id: id,
        hostname: host.into(),
        site_id,
        boot_state: if booted { "boot" } else { "dbg" }.into(),
        ip: Some(format!("10.0.{site_id}.{id}")),
        host_key: Some(format!("ssh-ed25519 KEY{id}")),
        last_contact: None,
        tags: BTreeMap::from([("link_class".to_owned(), class.to_owned())]),
    }
}

/// Four listed nodes at three sites (one not booted), stored as discovery would.
async fn seeded(app: &TestApp) {
    let sites = [site(1, "alpha"), site(2, "beta"), site(3, "gamma")];
    let nodes = [
        node(11, "a1.alpha.edu", 1, "internet2", true),
        node(12, "a2.alpha.edu", 1, "commodity", true),
        node(21, "b1.beta.edu", 2, "dsl", true),
        node(31, "c1.gamma.edu", 3, "dsl", false),
    ];
    sync::apply(&app.db, now(), &sites, &nodes).await.unwrap();
}

async fn operator(app: &TestApp) -> Caller {
    app.user("ops@example.org").await;
    let id = app.scalar("SELECT CAST(id AS BIGINT) FROM users WHERE email = 'ops@example.org'").await as i32;
    Caller { user_id: id, operator: true, via: Via::Session }
}

fn off() -> AdmissionView {
    AdmissionView {
        max_load: None,
        min_disk_free_pct: None,
        min_memory_free_mb: None,
        max_metric_age_s: None,
        max_path_age_s: None,
        exclude_after_failures: 0,
        allow_untested: true,
    }
}

const ONE_NODE: &str = r#"{"nodes": [{"name": "n", "node_type": "dsl"}]}"#;

async fn thresholds_change_what_the_mapper_may_use(app: TestApp) {
    seeded(&app).await;
    let op = operator(&app).await;
    let topology: model::topology::Topology = serde_json::from_str(ONE_NODE).unwrap();
    let map_with_stored = || async {
        let stored = admission::get(&app.db).await.unwrap();
        let w = world::build(&app.db, now(), stored.allow_untested).await.unwrap();
        let policy = Policy { admission: admission::to_mapper(&stored), ..Policy::default() };
        map(&w, &topology, &policy, 5.0).unwrap()
    };
    // Defaults need metrics nobody has reported yet: nothing passes, and the answer says why.
    let answer = map_with_stored().await;
    assert_eq!(answer.status, portolan_core::mapper::Status::Infeasible, "{answer:?}");
    let why = serde_json::to_string(&answer.explanation).unwrap();
    assert!(why.contains("unknown"), "{why}");
    let counts = admission::what_if(&app.db, now(), &admission::defaults()).await.unwrap();
    assert!(counts.classes.iter().all(|c| c.passing == 0), "{counts:?}");

    // Thresholds off: the booted DSL node is placed; the one not booted never is.
    admission::put(&app.db, now(), &op, &off()).await.unwrap();
    let answer = map_with_stored().await;
    assert_eq!(answer.placement[0].hostname, "b1.beta.edu", "{answer:?}");
    let counts = admission::what_if(&app.db, now(), &off()).await.unwrap();
    let dsl = counts.classes.iter().find(|c| c.class == "dsl").unwrap();
    assert_eq!((dsl.candidates, dsl.passing), (1, 1));

    // Untested nodes not lent: nothing is allocatable yet.
    admission::put(&app.db, now(), &op, &AdmissionView { allow_untested: false, ..off() }).await.unwrap();
    assert_eq!(map_with_stored().await.status, portolan_core::mapper::Status::Infeasible);

    // Bad values: refused, naming the field; the stored thresholds stay as they were.
    let before = admission::get(&app.db).await.unwrap();
    for (bad, field) in [
        (AdmissionView { max_load: Some(-1.0), ..off() }, "max_load"),
        (AdmissionView { min_disk_free_pct: Some(150.0), ..off() }, "min_disk_free_pct"),
        (AdmissionView { max_path_age_s: Some(f64::NAN), ..off() }, "max_path_age_s"),
        (AdmissionView { max_load: Some(0.0), ..off() }, "max_load"),
    ] {
        let e = admission::put(&app.db, now(), &op, &bad).await.unwrap_err();
        assert_eq!(e.field.as_deref(), Some(field), "{e:?}");
        assert!(e.message.contains(field), "{}", e.message);
    }
    assert_eq!(admission::get(&app.db).await.unwrap(), before);
    // Non-operators may not change them.
    let user = Caller { operator: false, ..op.clone() };
    assert!(admission::put(&app.db, now(), &user, &off()).await.is_err());
    assert_eq!(admission::get(&app.db).await.unwrap(), before);
    // Every change is audited.
    assert_eq!(app.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'admission.update'").await, 2);
}

on_both_databases!(thresholds_change_what_the_mapper_may_use);

/// `portolan map --from-db` maps onto the database's live world under the stored thresholds.
#[tokio::test]
async fn map_from_db_uses_the_live_world() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("portolan.db").display());
    let db = portolan_core::db::connect_and_migrate(&url, 2).await.unwrap();
    let sites = [site(1, "alpha"), site(2, "beta")];
    let nodes = [node(11, "a1.alpha.edu", 1, "internet2", true), node(21, "b1.beta.edu", 2, "dsl", true)];
    sync::apply(&db, now(), &sites, &nodes).await.unwrap();
    std::fs::write(dir.path().join("topology.json"), ONE_NODE).unwrap();
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_portolan"))
            .args(["map", "--from-db", "--topology", "topology.json", "--time-limit", "5"])
            .current_dir(dir.path())
            .env("DATABASE_URL", &url)
            .env_remove("PORTOLAN_CONFIG")
            .output()
            .expect("portolan runs")
    };
    let out = run();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["status"], "infeasible", "metrics unknown under the default thresholds: {answer}");

    let caller = Caller { user_id: 0, operator: true, via: Via::Session };
    // No user 0 exists: the audit row has no foreign key, the admission row records who.
    admission::put(&db, now(), &caller, &off()).await.unwrap();
    let out = run();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["placement"][0]["hostname"], "b1.beta.edu", "{answer}");
}
