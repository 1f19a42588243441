//! The portal's PLCAPI client (`portolan_core::testbed::plc`) against the real reference testbed over HTTP:
//! every class of error arrives classified, with the call and what the testbed said; answers that come late
//! (the testbed's timeout fault: the call took effect) are repeated safely; no call outlives its deadline.

use portolan_core::testbed::{
    Class, Endpoint, Generation, NodeOp, SliceSpec, Testbed as _,
    error::Cause,
    plc::{Plc, Settings},
};
use reference_testbed::{Testbed, clock::Clock, profile::Profile};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ADMIN: (&str, &str) = ("admin@testbed.example", "admin-password");

async fn start(profile: Profile, seed: u64) -> (Arc<Testbed>, String) {
    let tb = Testbed::new(reference_testbed::Settings {
        seed,
        profile,
        clock: Clock::scaled(1_790_000_000.0, 1.0),
        admins: vec![(ADMIN.0.to_owned(), ADMIN.1.to_owned())],
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/PLCAPI/", listener.local_addr().unwrap());
    tokio::spawn(reference_testbed::serve(tb.clone(), listener, std::future::pending()));
    (tb, url)
}

fn client(url: &str, password: &str, settings: Settings) -> Plc {
    let endpoint =
        Endpoint { url: url.to_owned(), username: ADMIN.0.to_owned(), password: password.to_owned() };
    Plc::new(endpoint, settings).unwrap()
}

/// Short waits, so that the harsh profile's faults are retried in milliseconds.
fn quick() -> Settings {
    Settings {
        request_timeout: Duration::from_millis(800),
        node_manager_timeout: Duration::from_secs(5),
        deadline: Duration::from_secs(20),
        min_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(50),
        session: false,
    }
}

fn quiet() -> Profile {
    let mut p = Profile::mild();
    p.api.fault_probability = 0.0;
    p.api.http_5xx_probability = 0.0;
    p.api.timeout_probability = 0.0;
    p.churn.initially_down = 0.0;
    p
}

#[tokio::test]
async fn reads_sites_nodes_and_paths() {
    let (tb, url) = start(quiet(), 1).await;
    let plc = client(&url, ADMIN.1, quick());
    plc.check_auth().await.unwrap();
    let sites = plc.sites().await.unwrap();
    let nodes = plc.nodes().await.unwrap();
    assert_eq!(sites.len(), tb.world.sites.len());
    assert_eq!(nodes.len(), 684);
    let first = &tb.world.nodes[0];
    let record = nodes.iter().find(|n| n.node_id == first.node_id).unwrap();
    assert_eq!(record.hostname, first.hostname);
    assert_eq!(record.ip.as_deref(), Some(first.ip.to_string().as_str()));
    assert_eq!(record.host_key.as_deref(), Some(first.host_key.as_str()));
    assert_eq!(record.tags.get("link_class").map(String::as_str), Some(first.link_class.as_str()));
    let paths = plc.paths().await.unwrap();
    assert!(paths.len() > 100_000, "{} paths", paths.len());
    assert_eq!(plc.generation(&first.hostname).await.unwrap(), Generation::NodeManager);
    assert_eq!(plc.last_generation(), Some(Generation::NodeManager));
}

#[tokio::test]
async fn session_auth_works_and_survives_a_lost_session() {
    let (tb, url) = start(quiet(), 1).await;
    let plc = client(&url, ADMIN.1, Settings { session: true, ..quick() });
    assert_eq!(plc.sites().await.unwrap().len(), tb.world.sites.len());
    // The testbed forgets its sessions (a restart would): the client makes a new one.
    tb.state().sessions.clear();
    assert_eq!(plc.sites().await.unwrap().len(), tb.world.sites.len());
    let key = tb.state().sessions.keys().next().cloned().expect("a new session was made");
    // Neither the session key nor the password shows in the client's Debug output (it reaches logs).
    let shown = format!("{plc:?}");
    assert!(!shown.contains(&key) && !shown.contains(ADMIN.1), "{shown}");
}

#[tokio::test]
async fn fatal_errors_are_not_retried_and_say_what_the_testbed_said() {
    let (_tb, url) = start(quiet(), 1).await;
    let wrong = client(&url, "not-the-password", quick());
    let e = wrong.sites().await.unwrap_err();
    assert_eq!(e.class, Class::Fatal);
    assert_eq!(e.fault_code(), Some(103));
    assert_eq!(e.attempts, 1);
    assert_eq!(e.call, "GetSites");
    assert!(e.to_string().contains("fatal") && e.to_string().contains("fault 103"), "{e}");

    let plc = client(&url, ADMIN.1, quick());
    let bad = SliceSpec {
        name: "Not A Slice Name".into(),
        description: String::new(),
        url: String::new(),
        instantiation: "plc-instantiated".into(),
        max_nodes: 10,
    };
    let e = plc.create_slice(&bad).await.unwrap_err();
    assert_eq!((e.class, e.fault_code()), (Class::Fatal, Some(102)), "{e}");
}

#[tokio::test]
async fn node_failures_are_continuable() {
    let mut profile = quiet();
    profile.node_manager.create_fail_probability = 1.0;
    profile.node_manager.create_min_s = 0.0;
    profile.node_manager.create_max_s = 0.0;
    let (tb, url) = start(profile, 1).await;
    let plc = client(&url, ADMIN.1, quick());
    let site = &tb.world.sites[tb.world.nodes[0].site].login_base;
    let slice = plc
        .create_slice(&SliceSpec {
            name: format!("{site}_portolan_t1"),
            description: "test".into(),
            url: String::new(),
            instantiation: "nm-controlled".into(),
            max_nodes: 10,
        })
        .await
        .unwrap();
    let host = tb.world.nodes[0].hostname.clone();
    plc.bind(&slice.name, std::slice::from_ref(&host)).await.unwrap();
    // Binding again is success.
    plc.bind(&slice.name, std::slice::from_ref(&host)).await.unwrap();
    let e = plc.node_manager(&host, NodeOp::Create, &slice.name).await.unwrap_err();
    assert_eq!(e.class, Class::Continuable, "{e}");
    // A node that does not answer: continuable too.
    tb.state().node_mut(0).up = false;
    let e = plc.node_manager(&host, NodeOp::Create, &slice.name).await.unwrap_err();
    assert_eq!(e.class, Class::Continuable, "{e}");
    assert!(matches!(e.cause, Cause::Http(502, _)), "{e}");
}

#[tokio::test]
async fn retryable_failures_end_at_the_deadline() {
    let mut profile = quiet();
    profile.api.http_5xx_probability = 1.0;
    let (_tb, url) = start(profile, 1).await;
    let deadline = Duration::from_millis(600);
    let plc = client(&url, ADMIN.1, Settings { deadline, ..quick() });
    let started = Instant::now();
    let e = plc.sites().await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(e.class, Class::Retryable);
    assert!(matches!(e.cause, Cause::Http(503, _)), "{e}");
    assert!(e.attempts > 1, "retried: {e}");
    assert!(took < deadline + Duration::from_millis(400), "took {took:?}");

    // Late answers: each attempt times out; the call ends at its deadline, classified as retryable.
    let mut profile = quiet();
    profile.api.timeout_probability = 1.0;
    profile.api.timeout_delay_s = 5.0;
    let (_tb, url) = start(profile, 1).await;
    let settings = Settings { request_timeout: Duration::from_millis(200), deadline, ..quick() };
    let plc = client(&url, ADMIN.1, settings);
    let started = Instant::now();
    let e = plc.check_auth().await.unwrap_err();
    assert_eq!((e.class, &e.cause), (Class::Retryable, &Cause::Timeout), "{e}");
    assert!(started.elapsed() < deadline + Duration::from_millis(400), "took {:?}", started.elapsed());

    // Nobody listening: a connection error, retryable.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://{}/PLCAPI/", listener.local_addr().unwrap());
    drop(listener);
    let plc = client(&closed, ADMIN.1, Settings { deadline: Duration::from_millis(300), ..quick() });
    let e = plc.sites().await.unwrap_err();
    assert!(matches!((e.class, &e.cause), (Class::Retryable, Cause::Connection(_))), "{e}");
}

/// Under the harsh profile (faults, 5xx and late answers) creating, binding and deleting slices, each twice,
/// ends with exactly the slices asked for: late answers that took effect are found, not duplicated.
#[tokio::test]
async fn late_answers_are_repeated_safely_under_the_harsh_profile() {
    let mut profile = Profile::harsh();
    profile.api.timeout_delay_s = 1.0;
    profile.api.timeout_probability = 0.15;
    let (tb, url) = start(profile, 7).await;
    let plc = client(&url, ADMIN.1, Settings { request_timeout: Duration::from_millis(400), ..quick() });
    let site = tb.world.sites[0].login_base.clone();
    let hosts: Vec<String> = tb.world.nodes.iter().take(3).map(|n| n.hostname.clone()).collect();
    let names: Vec<String> = (0..12).map(|i| format!("{site}_portolan_h{i}")).collect();
    for name in &names {
        let spec = SliceSpec {
            name: name.clone(),
            description: "harsh".into(),
            url: String::new(),
            instantiation: "plc-instantiated".into(),
            max_nodes: 10,
        };
        let first = plc.create_slice(&spec).await.unwrap_or_else(|e| panic!("create {name}: {e}"));
        let again = plc.create_slice(&spec).await.unwrap_or_else(|e| panic!("create {name} again: {e}"));
        assert_eq!(first.slice_id, again.slice_id);
        plc.bind(name, &hosts).await.unwrap();
        plc.bind(name, &hosts).await.unwrap();
        let read = plc.slice(name).await.unwrap().unwrap();
        assert_eq!(read.node_ids.len(), 3);
    }
    let listed =
        tb.state().slices.values().filter(|s| s.name.starts_with(&format!("{site}_portolan_h"))).count();
    assert_eq!(listed, names.len(), "each slice exactly once");
    for name in &names {
        plc.delete_slice(name).await.unwrap_or_else(|e| panic!("delete {name}: {e}"));
        plc.delete_slice(name).await.unwrap_or_else(|e| panic!("delete {name} again: {e}"));
    }
    assert_eq!(tb.state().slices.len(), 0);
    // The test exercised what it claims: late answers (which took effect), 503s and faults 106 happened.
    use reference_testbed::Injected;
    for fate in [Injected::Timeout, Injected::Unavailable, Injected::Fault] {
        assert!(tb.injected(fate) > 0, "no {fate:?} was injected: the test proves nothing about it");
    }
}
