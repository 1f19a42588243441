//! Discovery against the real reference testbed over HTTP, on SQLite and PostgreSQL: the first sync stores
//! every node and site; identity changes of each kind keep Portolan's node ids (a site change makes a new
//! node); the same reading twice changes nothing; shuffled records give the same result; an ambiguous match
//! waits for an operator; paths are stored, follow renamed nodes and age; the world built from the database
//! is the testbed's own export (up to the metrics still unknown); an unreachable testbed wipes nothing.

mod common;

use chrono::{DateTime, TimeDelta, Utc};
use common::TestApp;
use portolan_core::{
    auth::{Caller, Via},
    clock::Clock,
    db::entity::{NodePool, node},
    nodes::{
        self,
        discovery::{Discovery, Pass, Schedule, Task},
        sync, world,
    },
    testbed::{Endpoint, Testbed as _, plc},
};
use reference_testbed::{Testbed, profile::Profile};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

const ADMIN: (&str, &str) = ("admin@testbed.example", "admin-password");
const T0: f64 = 1_790_000_000.0;

async fn testbed(profile: Profile, world: Option<reference_testbed::world::World>) -> (Arc<Testbed>, String) {
    let settings = reference_testbed::Settings {
        seed: 1,
        profile,
        // Time stands almost still (one testbed second per real hour): no churn but ours.
        clock: reference_testbed::clock::Clock::scaled(T0, 1.0 / 3600.0),
        admins: vec![(ADMIN.0.to_owned(), ADMIN.1.to_owned())],
    };
    let tb = match world {
        Some(w) => Testbed::with_world(settings, w),
        None => Testbed::new(settings),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/PLCAPI/", listener.local_addr().unwrap());
    tokio::spawn(reference_testbed::serve(tb.clone(), listener, std::future::pending()));
    (tb, url)
}

fn quiet() -> Profile {
    let mut p = Profile::mild();
    p.api.fault_probability = 0.0;
    p.api.http_5xx_probability = 0.0;
    p.api.timeout_probability = 0.0;
    p
}

fn client(url: &str, password: &str) -> Arc<plc::Plc> {
    client_with_deadline(url, password, Duration::from_secs(60))
}

fn client_with_deadline(url: &str, password: &str, deadline: Duration) -> Arc<plc::Plc> {
    let settings = plc::Settings {
        request_timeout: Duration::from_secs(30),
        deadline,
        min_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(50),
        ..plc::Settings::default()
    };
    let endpoint =
        Endpoint { url: url.to_owned(), username: ADMIN.0.to_owned(), password: password.to_owned() };
    Arc::new(plc::Plc::new(endpoint, settings).unwrap())
}

fn portal_time() -> DateTime<Utc> {
    DateTime::from_timestamp(T0 as i64, 0).unwrap()
}

fn discovery(app: &TestApp, plc: Arc<plc::Plc>, clock: &Clock) -> Discovery {
    Discovery::new(app.db.clone(), clock.clone(), plc, Schedule::default())
}

async fn nodes_pass(d: &Discovery) -> sync::SyncReport {
    match d.pass(Task::Nodes).await.unwrap() {
        Pass::Nodes(r) => r,
        other => panic!("expected a nodes pass, got {other:?}"),
    }
}

/// Node rows by Portolan id.
async fn stored(app: &TestApp) -> HashMap<i64, node::Model> {
    node::Entity::find().all(&app.db).await.unwrap().into_iter().map(|n| (n.id, n)).collect()
}

async fn id_of(app: &TestApp, hostname: &str) -> i64 {
    node::Entity::find()
        .filter(node::Column::Hostname.eq(hostname))
        .filter(node::Column::Pool.ne(NodePool::Gone))
        .one(&app.db)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no node {hostname}"))
        .id
}

async fn events(app: &TestApp, node_id: i64) -> Vec<String> {
    nodes::get(&app.db, node_id).await.unwrap().identity.into_iter().map(|e| e.kind).collect()
}

async fn first_sync_then_churn_of_every_kind(app: TestApp) {
    let (tb, url) = testbed(quiet(), None).await;
    let clock = Clock::manual(portal_time());
    let d = discovery(&app, client(&url, ADMIN.1), &clock);
    let first = nodes_pass(&d).await;
    assert_eq!((first.added, first.sites_added), (684, 258), "{first:?}");
    assert_eq!(app.count("nodes").await, 684);
    assert_eq!(app.count("sites").await, 258);
    let down = tb.state().nodes.iter().filter(|n| !n.up).count() as u64;
    let pools = nodes::pool_counts(&app.db).await.unwrap();
    assert_eq!(pools[&NodePool::Down], down);
    assert_eq!(pools[&NodePool::New], 684 - down);

    // Not due yet: nothing runs. Due again, the same testbed state changes nothing.
    assert_eq!(d.pass(Task::Nodes).await.unwrap(), Pass::Skipped);
    let before = stored(&app).await;
    let events_before = app.count("node_events").await;
    clock.advance(TimeDelta::minutes(6));
    let again = nodes_pass(&d).await;
    assert!(!again.changed_anything(), "{again:?}");
    assert_eq!(stored(&app).await, before);
    assert_eq!(app.count("node_events").await, events_before);

    // One node per kind of change (nodes 10.. so as to touch different sites' first nodes rarely).
    let world = &tb.world;
    let pick = |k: usize| (k, world.nodes[k].hostname.clone());
    let (id_only, host_only, ip_only, two, all_three, moved) =
        (pick(10), pick(20), pick(30), pick(40), pick(50), pick(60));
    let ids: HashMap<usize, i64> = {
        let mut m = HashMap::new();
        for (k, host) in [&id_only, &host_only, &ip_only, &two, &all_three, &moved] {
            m.insert(*k, id_of(&app, host).await);
        }
        m
    };
    {
        let mut state = tb.state();
        let next = state.next_node_id;
        state.next_node_id += 10;
        state.node_mut(id_only.0).node_id = next;
        state.node_mut(host_only.0).hostname = "renamed-20.example.org".into();
        state.node_mut(ip_only.0).ip = "198.51.100.30".parse().unwrap();
        let n = state.node_mut(two.0);
        n.node_id = next + 1;
        n.hostname = "renamed-40.example.org".into();
        let n = state.node_mut(all_three.0);
        n.node_id = next + 2;
        n.hostname = "renamed-50.example.org".into();
        n.ip = "198.51.100.50".parse().unwrap();
        let other_site = (world.nodes[moved.0].site + 1) % world.sites.len();
        state.node_mut(moved.0).site = other_site;
        state.reindex();
    }
    clock.advance(TimeDelta::minutes(6));
    let churned = nodes_pass(&d).await;
    assert_eq!(churned.identity_changed, 5, "{churned:?}");
    assert_eq!(churned.replaced, 1, "{churned:?}");
    assert_eq!((churned.added, churned.gone, churned.held), (0, 0, 0), "{churned:?}");
    let now = stored(&app).await;
    assert_eq!(now[&ids[&id_only.0]].testbed_id, tb.state().nodes[id_only.0].node_id.into());
    assert_eq!(now[&ids[&host_only.0]].hostname, "renamed-20.example.org");
    assert_eq!(now[&ids[&ip_only.0]].ip.as_deref(), Some("198.51.100.30"));
    assert_eq!(now[&ids[&two.0]].hostname, "renamed-40.example.org");
    assert_eq!(now[&ids[&all_three.0]].ip.as_deref(), Some("198.51.100.50"));
    for k in [id_only.0, host_only.0, ip_only.0, two.0, all_three.0] {
        assert_eq!(events(&app, ids[&k]).await.first().map(String::as_str), Some("changed"), "node {k}");
    }
    // The moved node: its old row is gone (replaced), a new one stands at the new site.
    let old = &now[&ids[&moved.0]];
    assert_eq!(old.pool, NodePool::Gone);
    assert_eq!(events(&app, old.id).await.first().map(String::as_str), Some("replaced"));
    let new_id = id_of(&app, &moved.1).await;
    assert_ne!(new_id, old.id);
    assert_ne!(now[&new_id].site_id, old.site_id);
    // Identity changes are in the audit log too.
    assert!(app.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'node.identity'").await >= 6);

    // A node that leaves is gone at once, and out of the mapper's world; back, it keeps its id.
    let leaver = id_of(&app, &world.nodes[70].hostname).await;
    {
        let mut state = tb.state();
        state.node_mut(70).present = false;
        state.reindex();
    }
    clock.advance(TimeDelta::minutes(6));
    assert_eq!(nodes_pass(&d).await.gone, 1);
    assert_eq!(stored(&app).await[&leaver].pool, NodePool::Gone);
    let w = world::build(&app.db, clock.now(), true).await.unwrap();
    assert!(!w.nodes.iter().any(|n| n.id == leaver as u64));
    {
        let mut state = tb.state();
        state.node_mut(70).present = true;
        state.reindex();
    }
    clock.advance(TimeDelta::minutes(6));
    assert_eq!(nodes_pass(&d).await.returned, 1);
    assert_ne!(stored(&app).await[&leaver].pool, NodePool::Gone);
}

async fn shuffled_records_give_the_same_result(app: TestApp) {
    let (_tb, url) = testbed(quiet(), None).await;
    let plc = client(&url, ADMIN.1);
    let (sites, mut records) = (plc.sites().await.unwrap(), plc.nodes().await.unwrap());
    sync::apply(&app.db, portal_time(), &sites, &records).await.unwrap();
    let ordered: Vec<(i64, Option<i32>, String)> = node::Entity::find()
        .order_by_asc(node::Column::Id)
        .all(&app.db)
        .await
        .unwrap()
        .into_iter()
        .map(|n| (n.id, n.testbed_id, n.hostname))
        .collect();
    // Reversed and interleaved, on a second database: the same ids for the same nodes.
    let other = TestApp::sqlite().await;
    records.reverse();
    let (even, odd): (Vec<_>, Vec<_>) = records.iter().cloned().enumerate().partition(|(i, _)| i % 2 == 0);
    let mixed: Vec<_> = odd.into_iter().chain(even).map(|(_, r)| r).collect();
    sync::apply(&other.db, portal_time(), &sites, &mixed).await.unwrap();
    let shuffled: Vec<(i64, Option<i32>, String)> = node::Entity::find()
        .order_by_asc(node::Column::Id)
        .all(&other.db)
        .await
        .unwrap()
        .into_iter()
        .map(|n| (n.id, n.testbed_id, n.hostname))
        .collect();
    assert_eq!(ordered, shuffled);
    // And a sync of the same records in yet another order changes nothing.
    let report = sync::apply(&app.db, portal_time(), &sites, &mixed).await.unwrap();
    assert!(!report.changed_anything(), "{report:?}");
}

fn operator() -> Caller {
    Caller { user_id: 1, operator: true, via: Via::Session }
}

async fn ambiguous_match_waits_for_an_operator(app: TestApp) {
    // A world whose nodes publish no host keys: a node renamed and re-registered at once keeps only its IP.
    let mut w = reference_testbed::world::World::planetlab(1);
    for n in &mut w.nodes {
        n.host_key = String::new();
    }
    let (tb, url) = testbed(quiet(), Some(w)).await;
    let clock = Clock::manual(portal_time());
    let d = discovery(&app, client(&url, ADMIN.1), &clock);
    nodes_pass(&d).await;
    let k = 5;
    let old_id = id_of(&app, &tb.world.nodes[k].hostname).await;
    {
        let mut state = tb.state();
        let next = state.next_node_id;
        state.next_node_id += 1;
        let n = state.node_mut(k);
        n.node_id = next;
        n.hostname = "mystery.example.org".into();
        state.reindex();
    }
    clock.advance(TimeDelta::minutes(6));
    let report = nodes_pass(&d).await;
    assert_eq!((report.held, report.gone, report.added), (1, 0, 0), "{report:?}");
    let held_id = id_of(&app, "mystery.example.org").await;
    let rows = stored(&app).await;
    assert_eq!(rows[&held_id].pool, NodePool::Held);
    assert_eq!(rows[&old_id].pool, NodePool::Held);
    // Held nodes are out of the mapper's world.
    let w = world::build(&app.db, clock.now(), true).await.unwrap();
    assert!(!w.nodes.iter().any(|n| n.id == held_id as u64 || n.id == old_id as u64));
    // Synced again, it still waits (nothing is decided silently).
    clock.advance(TimeDelta::minutes(6));
    assert!(!nodes_pass(&d).await.changed_anything());
    let pending = nodes::decisions(&app.db).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].candidates[0].node.id, old_id);
    assert!(pending[0].reason.contains("IP"), "{}", pending[0].reason);

    // Non-operators may not decide.
    let user = Caller { operator: false, ..operator() };
    let accept = model::nodes::Decision::Accept { node_id: old_id };
    assert!(nodes::decide(&app.db, clock.now(), &user, pending[0].id, &accept).await.is_err());
    // The operator accepts: the old node takes the new identity, keeps its id; the duplicate goes.
    app.user("operator@example.org").await;
    let op_id =
        app.scalar("SELECT CAST(id AS BIGINT) FROM users WHERE email = 'operator@example.org'").await as i32;
    let op = Caller { user_id: op_id, ..operator() };
    nodes::decide(&app.db, clock.now(), &op, pending[0].id, &accept).await.unwrap();
    let rows = stored(&app).await;
    assert!(!rows.contains_key(&held_id));
    assert_eq!(rows[&old_id].hostname, "mystery.example.org");
    assert_eq!(rows[&old_id].pool, NodePool::New);
    assert!(nodes::decisions(&app.db).await.unwrap().is_empty());
    assert!(events(&app, old_id).await.contains(&"decided".to_owned()));
    // The next sync matches it at once.
    clock.advance(TimeDelta::minutes(6));
    let report = nodes_pass(&d).await;
    assert_eq!((report.held, report.added, report.gone), (0, 0, 0), "{report:?}");
}

async fn paths_are_stored_follow_renames_and_the_world_matches_the_export(app: TestApp) {
    let mut profile = quiet();
    profile.churn.initially_down = 0.0;
    let (tb, url) = testbed(profile, None).await;
    let clock = Clock::manual(DateTime::from_timestamp_micros((tb.now() * 1e6) as i64).unwrap());
    let d = discovery(&app, client(&url, ADMIN.1), &clock);
    nodes_pass(&d).await;
    let pass = d.pass(Task::Paths).await.unwrap();
    let Pass::Paths(report) = pass else { panic!("paths pass: {pass:?}") };
    assert!(report.read > 100_000 && report.unknown == 0, "{report:?}");
    assert_eq!(app.count("paths").await, i64::from(report.written));
    // The same round again writes nothing.
    clock.advance(TimeDelta::minutes(16));
    let Pass::Paths(again) = d.pass(Task::Paths).await.unwrap() else { panic!("paths pass") };
    assert_eq!(again.written, 0, "{again:?}");

    // The world from the database is the testbed's export at the feed's round, up to the unknown metrics.
    let round = reference_testbed::sensor::round_start(tb.now());
    let export = tb.world.to_map_world_at(round);
    let ours = world::build(&app.db, clock.now(), true).await.unwrap();
    assert_eq!(ours.nodes.len(), export.nodes.len());
    let host_of_ours: HashMap<u64, &str> = ours.nodes.iter().map(|n| (n.id, n.hostname.as_str())).collect();
    let export_host: HashMap<u64, &str> = export.nodes.iter().map(|n| (n.id, n.hostname.as_str())).collect();
    for (mine, theirs) in ours.nodes.iter().zip({
        let mut e = export.nodes.clone();
        e.sort_by_key(|n| n.id);
        e
    }) {
        assert_eq!(
            (&mine.hostname, &mine.site, mine.link_class),
            (&theirs.hostname, &theirs.site, theirs.link_class)
        );
        assert_eq!(
            (mine.load, mine.memory_free_mb, mine.disk_free_pct, mine.metric_age_s),
            (None, None, None, None)
        );
    }
    assert_eq!(ours.paths.len(), export.paths.len());
    let key =
        |a: &str, b: &str| if a < b { (a.to_owned(), b.to_owned()) } else { (b.to_owned(), a.to_owned()) };
    let theirs: HashMap<(String, String), &model::world::MeasuredPath> =
        export.paths.iter().map(|p| (key(export_host[&p.a], export_host[&p.b]), p)).collect();
    let offset = (clock.now().timestamp_micros() as f64 / 1e6) - round;
    for p in &ours.paths {
        let t = theirs[&key(host_of_ours[&p.a], host_of_ours[&p.b])];
        // Equal up to the last digit the feed's JSON carries.
        let close = |x: f64, y: f64| (x - y).abs() <= 1e-12 * x.abs().max(y.abs()).max(1.0);
        assert!(
            close(p.latency_ms, t.latency_ms)
                && close(p.bandwidth_kbps, t.bandwidth_kbps)
                && close(p.loss, t.loss),
            "{p:?} vs {t:?}"
        );
        assert!((p.age_s - (t.age_s + offset)).abs() < 1e-3, "{} vs {} + {offset}", p.age_s, t.age_s);
    }

    // A renamed node keeps its paths (keyed by Portolan's id), and the feed's new name maps to it.
    let k = 3;
    let id = id_of(&app, &tb.world.nodes[k].hostname).await;
    let before = nodes::paths::nearest(&app.db, id, 10_000).await.unwrap().len();
    assert!(before > 0);
    {
        let mut state = tb.state();
        state.node_mut(k).hostname = "renamed-3.example.org".into();
        state.reindex();
    }
    clock.advance(TimeDelta::minutes(6));
    nodes_pass(&d).await;
    assert_eq!(id_of(&app, "renamed-3.example.org").await, id);
    assert_eq!(nodes::paths::nearest(&app.db, id, 10_000).await.unwrap().len(), before);
    let feed = client(&url, ADMIN.1).paths().await.unwrap();
    clock.advance(TimeDelta::minutes(16));
    let Pass::Paths(after) = d.pass(Task::Paths).await.unwrap() else { panic!("paths pass") };
    assert_eq!(after.unknown, 0, "every host of the feed maps to a node ({} rows)", feed.len());

    // Ageing: two hours on, every path is older than the default path threshold.
    let later = clock.now() + TimeDelta::hours(2);
    let aged = world::build(&app.db, later, true).await.unwrap();
    let admission = nodes::admission::to_mapper(&nodes::admission::defaults());
    assert!(aged.paths.iter().all(|p| !admission.path_fresh(p.age_s)));
}

async fn an_unreachable_or_refusing_testbed_wipes_nothing(app: TestApp) {
    let (_tb, url) = testbed(quiet(), None).await;
    let clock = Clock::manual(portal_time());
    nodes_pass(&discovery(&app, client(&url, ADMIN.1), &clock)).await;
    let before = stored(&app).await;

    // Wrong credentials: fatal, recorded, nothing touched.
    clock.advance(TimeDelta::minutes(6));
    let refused = discovery(&app, client(&url, "wrong"), &clock);
    match refused.pass(Task::Nodes).await.unwrap() {
        Pass::Failed(why) => assert!(why.contains("fault 103") && why.contains("fatal"), "{why}"),
        other => panic!("{other:?}"),
    }
    // Unreachable: retryable, recorded, nothing touched; due again after a backoff, not at once.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://{}/PLCAPI/", listener.local_addr().unwrap());
    drop(listener);
    let unreachable =
        discovery(&app, client_with_deadline(&closed, ADMIN.1, Duration::from_millis(500)), &clock);
    clock.advance(TimeDelta::minutes(1));
    match unreachable.pass(Task::Nodes).await.unwrap() {
        Pass::Failed(why) => assert!(why.contains("connection"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(unreachable.pass(Task::Nodes).await.unwrap(), Pass::Skipped);
    assert_eq!(stored(&app).await, before);
    let runs = nodes::runs(&app.db, 10).await.unwrap();
    assert!(!runs[0].ok && runs[0].error.as_deref().unwrap_or("").contains("connection"), "{:?}", runs[0]);
    assert!(!runs[1].ok);
}

fn record(id: i32, host: &str, ip: &str) -> portolan_core::testbed::NodeRecord {
    portolan_core::testbed::NodeRecord {
        node_id: id,
        hostname: host.into(),
        site_id: 1,
        boot_state: "boot".into(),
        ip: Some(ip.into()),
        host_key: None,
        last_contact: None,
        tags: Default::default(),
    }
}

/// A held candidate whose own record comes back is matched again and released; accepting it for the held
/// record afterwards is refused as stale (409), and "new node" still settles the decision.
async fn a_stale_decision_is_refused(app: TestApp) {
    let sites = [portolan_core::testbed::SiteRecord {
        site_id: 1,
        login_base: "alpha".into(),
        name: "Alpha".into(),
        enabled: true,
        max_slices: None,
        latitude: None,
        longitude: None,
    }];
    let t = portal_time();
    sync::apply(&app.db, t, &sites, &[record(1, "a.alpha.edu", "10.0.0.1")]).await.unwrap();
    let a = id_of(&app, "a.alpha.edu").await;
    // Another record shares only the IP: held, with `a` as its candidate.
    let report = sync::apply(&app.db, t, &sites, &[record(2, "z.alpha.edu", "10.0.0.1")]).await.unwrap();
    assert_eq!(report.held, 1, "{report:?}");
    let pending = nodes::decisions(&app.db).await.unwrap();
    assert_eq!(pending[0].candidates[0].node.id, a);
    // `a`'s own record is listed again: matched, released from hold.
    let both = [record(1, "a.alpha.edu", "10.0.0.1"), record(2, "z.alpha.edu", "10.0.0.1")];
    sync::apply(&app.db, t, &sites, &both).await.unwrap();
    assert_eq!(stored(&app).await[&a].pool, NodePool::New);
    app.user("operator@example.org").await;
    let op_id =
        app.scalar("SELECT CAST(id AS BIGINT) FROM users WHERE email = 'operator@example.org'").await as i32;
    let op = Caller { user_id: op_id, ..operator() };
    let accept = model::nodes::Decision::Accept { node_id: a };
    let e = nodes::decide(&app.db, t, &op, pending[0].id, &accept).await.unwrap_err();
    assert_eq!(e.code, model::error::ErrorCode::Conflict, "{e:?}");
    nodes::decide(&app.db, t, &op, pending[0].id, &model::nodes::Decision::New).await.unwrap();
    assert_eq!(stored(&app).await[&id_of(&app, "z.alpha.edu").await].pool, NodePool::New);
    assert_eq!(
        stored(&app).await[&a].pool,
        NodePool::New,
        "a node matched meanwhile is not released as gone"
    );
}

on_both_databases!(
    first_sync_then_churn_of_every_kind,
    shuffled_records_give_the_same_result,
    ambiguous_match_waits_for_an_operator,
    paths_are_stored_follow_renames_and_the_world_matches_the_export,
    an_unreachable_or_refusing_testbed_wipes_nothing,
    a_stale_decision_is_refused,
);
