//! Liveness bench: how long the portal takes, from its first sight of the real 684-node PlanetLab world
//! under the `paper` profile, until the nodes that are up are free (a service sliver came up end to end on
//! each), on a scaled clock.
//!
//! ```sh
//! cargo bench -p server --bench liveness        # SQLite and PostgreSQL, 600× and 60×, concurrency 32, 128
//! cargo bench -p server --bench liveness -- sqlite
//! LIVENESS_SCALE=30 LIVENESS_CONCURRENCY=32 LIVENESS_BATCH=700 cargo bench -p server --bench liveness
//! ```
//!
//! The setup is the sliver tests' harness (`server/tests/common/slivers.rs`), with the real world: the
//! reference testbed (`World::planetlab`, `Profile::paper`: asynchronous instantiation with an hour-long
//! tail, a node-manager `Create` failing 23% of the time and taking 1 to 15 minutes, a tenth of the nodes
//! down, API faults, churn) serving PLCAPI over HTTP and its slivers' SSH endpoints (simulated slivers
//! running the agent in-process), and the portal on the same scaled clock (`LIVENESS_SCALE`: portal seconds
//! per real second, a list; at 600× the real work of ~700 bring-ups bounds the run, at 60× and 30× the
//! testbed does, and their portal times agree). The portal's loops run as `serve` runs them
//! (a [`Supervisor`] with `serve`'s periods, in portal time): discovery of nodes (the path feed is left out:
//! it does not bear on liveness), the bring-up reconciler (`LIVENESS_CONCURRENCY` slivers at once) and the
//! liveness loop (`LIVENESS_BATCH` nodes per pass).
//!
//! Heartbeat, silence and first-heartbeat bounds are portal time, and agents beat at least once a real
//! second; so they are set to 1, 5 and 2 real seconds (as the tests' 60 s, 300 s and 120 s at 60×), not to
//! their production values, which at 600× would be a fraction of a real second.
//!
//! It reports the portal time and real time until 50% and 90% of the nodes the testbed has up and present
//! are free, and the attempts per step that failed (`sliver_attempts`). The agent binary handed out is
//! `target/release/portolan` (simulated slivers only `HEAD` it).

#[path = "../tests/common/mod.rs"]
mod common;

use chrono::{DateTime, TimeDelta, Utc};
use common::TestApp;
use portolan_core::{
    clock::Clock,
    db::entity::{NodePool, node, sliver_attempt},
    liveness::{self, Liveness},
    nodes::discovery::{Discovery, Schedule, Task},
    slivers::{self, Artifact, reconcile::Reconciler},
    supervisor::Supervisor,
    testbed::{Endpoint, plc},
};
use reference_testbed::{Testbed, profile::Profile, world::World};
use sea_orm::EntityTrait;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ADMIN: (&str, &str) = ("admin@testbed.example", "admin-password");

/// Real seconds between heartbeats, of silence before a sliver is down, and for an agent's first heartbeat.
const HEARTBEAT_REAL_S: f64 = 1.0;
const SILENCE_REAL_S: f64 = 5.0;
const FIRST_HEARTBEAT_REAL_S: f64 = 2.0;

struct Run {
    database: &'static str,
    scale: f64,
    concurrency: usize,
    batch: u32,
    up: usize,
    /// (fraction, portal time, real time) when it was reached.
    reached: Vec<(f64, Option<(TimeDelta, Duration)>)>,
    /// Failed attempts per (step, class), and attempts in all.
    failures: BTreeMap<(String, String), usize>,
    attempts: usize,
    /// The successful attempts' portal seconds: 50th and 90th percentiles.
    up_in: (f64, f64),
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A comma-separated list from the environment variable `name`, else `default`.
fn list<T: std::str::FromStr>(name: &str, default: &str) -> Vec<T> {
    let text = std::env::var(name).unwrap_or_else(|_| default.to_owned());
    text.split(',').filter_map(|v| v.trim().parse().ok()).collect()
}

fn main() {
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let batch: u32 = env("LIVENESS_BATCH", 700);
    let scales: Vec<f64> = list("LIVENESS_SCALE", "600,60");
    let concurrencies: Vec<usize> = list("LIVENESS_CONCURRENCY", "32,128");
    let mut runs = Vec::new();
    for database in ["sqlite", "postgres"] {
        if !filters.is_empty() && !filters.iter().any(|f| f == database) {
            continue;
        }
        for (&scale, &concurrency) in scales.iter().flat_map(|s| concurrencies.iter().map(move |c| (s, c))) {
            let runtime = tokio::runtime::Runtime::new().expect("a runtime");
            runs.push(runtime.block_on(run(database, scale, concurrency, batch)));
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
    }
    print(&runs);
}

/// The real world under the paper profile, serving PLCAPI and SSH on loopback, on `clock`.
async fn testbed(clock: reference_testbed::clock::Clock) -> (Arc<Testbed>, String) {
    let settings = reference_testbed::Settings {
        seed: 7,
        profile: Profile::paper(),
        clock,
        admins: vec![(ADMIN.0.to_owned(), ADMIN.1.to_owned())],
    };
    let tb = Testbed::with_world(settings, World::planetlab(7));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let url = format!("http://{}/PLCAPI/", listener.local_addr().expect("bound"));
    tokio::spawn(reference_testbed::serve(tb.clone(), listener, std::future::pending()));
    reference_testbed::cli::serve_ssh_on(&tb, "0.0.0.0:0".parse().expect("an address")).await.expect("SSH");
    (tb, url)
}

/// Portal seconds that last `real` seconds at `scale`.
fn portal(real: f64, scale: f64) -> TimeDelta {
    TimeDelta::milliseconds((real * scale * 1000.0) as i64)
}

/// The portal's loops as `serve` starts them, against the testbed at `url`.
async fn loops(
    app: &TestApp,
    clock: &Clock,
    url: String,
    scale: f64,
    concurrency: usize,
    batch: u32,
) -> Supervisor {
    let plc_settings = plc::Settings {
        request_timeout: Duration::from_secs(30),
        deadline: Duration::from_secs(120),
        ..plc::Settings::default()
    };
    let endpoint = Endpoint { url, username: ADMIN.0.to_owned(), password: ADMIN.1.to_owned() };
    let client = Arc::new(plc::Plc::new(endpoint, plc_settings).expect("a client"));
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_portolan"));
    let artifact =
        tokio::task::spawn_blocking(move || Artifact::of(binary)).await.expect("hashed").expect("read");
    let settings = Arc::new(slivers::Settings {
        agent_url: app.url("").trim_end_matches('/').to_owned(),
        artifact: Some(artifact),
        heartbeat: portal(HEARTBEAT_REAL_S, scale),
        silence: portal(SILENCE_REAL_S, scale),
        first_heartbeat: portal(FIRST_HEARTBEAT_REAL_S, scale),
        concurrency,
        ..slivers::Settings::default()
    });
    let identity = slivers::portal_identity(&app.db, clock.now()).await.expect("an identity");
    let reconciler =
        Reconciler::new(app.db.clone(), clock.clone(), client.clone(), identity.clone(), settings.clone());
    let liveness = Arc::new(Liveness::new(
        app.db.clone(),
        clock.clone(),
        client.clone(),
        identity,
        liveness::Settings {
            url: app.url(""),
            testbed_user: ADMIN.0.to_owned(),
            batch,
            silence: settings.silence,
            ..liveness::Settings::default()
        },
    ));
    let discovery = Discovery::new(app.db.clone(), clock.clone(), client, Schedule::default());
    let mut supervisor = Supervisor::new(clock.clone());
    supervisor.every("discovery-nodes", server::DISCOVERY_POLL, move || {
        let discovery = discovery.clone();
        async move { discovery.pass(Task::Nodes).await.map(|_| ()) }
    });
    supervisor.every("slivers", server::SLIVER_POLL, move || {
        let reconciler = reconciler.clone();
        async move { reconciler.pass().await.map(|_| ()) }
    });
    supervisor.every("liveness", server::LIVENESS_POLL, move || {
        let liveness = liveness.clone();
        async move { liveness.pass().await.map(|_| ()) }
    });
    supervisor
}

/// Of the nodes the testbed has up and present: how many, and how many of them the portal has free.
async fn progress(tb: &Testbed, app: &TestApp) -> (usize, usize) {
    let up: HashSet<String> = {
        let state = tb.state();
        state.nodes.iter().filter(|n| n.up && n.present).map(|n| n.hostname.clone()).collect()
    };
    let pools: HashMap<String, NodePool> = node::Entity::find()
        .all(&app.db)
        .await
        .expect("the nodes")
        .into_iter()
        .map(|n| (n.hostname, n.pool))
        .collect();
    let free = up.iter().filter(|h| pools.get(*h) == Some(&NodePool::Free)).count();
    (up.len(), free)
}

async fn run(database: &'static str, scale: f64, concurrency: usize, batch: u32) -> Run {
    let limit = Duration::from_secs(env("LIVENESS_LIMIT_S", 900));
    // Both clocks start at the same instant.
    let start = Utc::now().timestamp();
    let testbed_clock = reference_testbed::clock::Clock::scaled(start as f64, scale);
    let clock = Clock::scaled(DateTime::from_timestamp(start, 0).expect("a time"), scale);
    let (tb, url) = testbed(testbed_clock).await;
    let app = TestApp::with_clock(
        database,
        |c| {
            c.db_max_connections = 10;
            c.agent_binary = Some(env!("CARGO_BIN_EXE_portolan").into());
            c.heartbeat_s = HEARTBEAT_REAL_S * scale;
            c.silence_s = SILENCE_REAL_S * scale;
        },
        clock.clone(),
    )
    .await;
    let supervisor = loops(&app, &clock, url, scale, concurrency, batch).await;
    let began = (clock.now(), Instant::now());
    let mut reached: Vec<(f64, Option<(TimeDelta, Duration)>)> = vec![(0.5, None), (0.9, None)];
    let mut up = 0;
    while reached.iter().any(|(_, r)| r.is_none()) && began.1.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (now_up, free) = progress(&tb, &app).await;
        up = now_up;
        for (fraction, at) in reached.iter_mut().filter(|(_, at)| at.is_none()) {
            if free as f64 >= *fraction * up as f64 && up > 0 {
                *at = Some((clock.now() - began.0, began.1.elapsed()));
                eprintln!(
                    "{database}, {concurrency} at once: {free}/{up} free after {:?} real",
                    began.1.elapsed()
                );
            }
        }
    }
    supervisor.shutdown().await;
    let attempts = sliver_attempt::Entity::find().all(&app.db).await.expect("the attempts");
    let mut failures = BTreeMap::new();
    for a in attempts.iter().filter(|a| a.failed_step.is_some()) {
        let key = (a.failed_step.clone().unwrap_or_default(), a.class.clone().unwrap_or_default());
        *failures.entry(key).or_insert(0) += 1;
    }
    let mut seconds: Vec<f64> =
        attempts.iter().filter(|a| a.failed_step.is_none()).map(|a| a.seconds).collect();
    seconds.sort_by(f64::total_cmp);
    let quantile = |q: f64| seconds.get((seconds.len() as f64 * q) as usize).copied().unwrap_or(0.0);
    let up_in = (quantile(0.5), quantile(0.9));
    Run { database, scale, concurrency, batch, up, reached, failures, attempts: attempts.len(), up_in }
}

fn print(runs: &[Run]) {
    let hms = |t: TimeDelta| format!("{}:{:02}", t.num_hours(), t.num_minutes() % 60);
    println!();
    println!("the real world (684 nodes), profile paper; portal time h:mm (attempts: min), real time s");
    println!();
    println!(
        "| database | scale | concurrency | batch | up nodes | 50% free (portal / real) | 90% free (portal / real) | attempts | successful attempt p50 / p90 | failed attempts by step (class) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for r in runs {
        let cell = |i: usize| match r.reached[i].1 {
            Some((portal, real)) => format!("{} / {:.1} s", hms(portal), real.as_secs_f64()),
            None => "not reached".to_owned(),
        };
        let failures: Vec<String> =
            r.failures.iter().map(|((step, class), n)| format!("{step} ({class}) {n}")).collect();
        println!(
            "| {} | {}× | {} | {} | {} | {} | {} | {} | {:.1} / {:.1} min | {} |",
            r.database,
            r.scale,
            r.concurrency,
            r.batch,
            r.up,
            cell(0),
            cell(1),
            r.attempts,
            r.up_in.0 / 60.0,
            r.up_in.1 / 60.0,
            failures.join(", ")
        );
    }
}
