//! Discovery bench: a full discovery cycle on the reference testbed's generated 10,000-node world, and the
//! ingestion of the real world's sensor feed, on SQLite and on PostgreSQL.
//!
//! ```sh
//! cargo bench -p server --bench discovery              # both databases
//! cargo bench -p server --bench discovery -- sqlite
//! ```
//!
//! For each database (a temporary SQLite file, or a new database on the PostgreSQL server of `DATABASE_URL`,
//! as the integration tests do) it starts a reference testbed in this process, serves it over HTTP on
//! loopback, and measures with the portal's own PLCAPI client:
//!
//! - the first sync of the 10,000 nodes (every row inserted);
//! - a cycle with 1% of the nodes changed (identity changes of every kind, some leaving, some going down):
//!   fetch (`GetSites`, `GetNodes`, `GetInterfaces`, `GetNodeTags` over HTTP: the testbed's answer time and
//!   the client's decoding) and the portal's own part, match and write;
//! - the same cycle again, unchanged: it must write no row;
//! - on the real PlanetLab world (684 nodes): the sensor feed's ~120,000 paths, fetched, then ingested.
//!
//! Targets (README): match and write under 300 ms, the whole cycle under 2 s, ingesting the paths under 2 s.

#[path = "../tests/common/mod.rs"]
mod common;

use chrono::{DateTime, Utc};
use portolan_core::nodes::{paths, sync};
use portolan_core::testbed::{Endpoint, Testbed as _, plc};
use reference_testbed::{Testbed, profile::Profile};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ADMIN: (&str, &str) = ("admin@bench.example", "bench-password");

struct Row {
    database: &'static str,
    what: String,
    fetch_ms: f64,
    apply_ms: f64,
    /// The portal's part, split: loading what is stored, matching, writing.
    phases: String,
    rows_written: u32,
}

fn main() {
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let mut rows = Vec::new();
    for database in ["sqlite", "postgres"] {
        if !filters.is_empty() && !filters.iter().any(|f| f == database) {
            continue;
        }
        rows.extend(runtime.block_on(bench(database)));
    }
    println!();
    println!(
        "| database | step | fetch (testbed + client) | load, match and write | (load / match / write) | whole | rows written |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {:.0} ms | {:.0} ms | {} | {:.0} ms | {} |",
            r.database,
            r.what,
            r.fetch_ms,
            r.apply_ms,
            r.phases,
            r.fetch_ms + r.apply_ms,
            r.rows_written
        );
    }
}

fn quiet(nodes: usize) -> Profile {
    let mut p = Profile::mild();
    p.api.fault_probability = 0.0;
    p.api.http_5xx_probability = 0.0;
    p.api.timeout_probability = 0.0;
    p.world.nodes = nodes;
    p
}

async fn serve(profile: Profile) -> (Arc<Testbed>, Arc<plc::Plc>) {
    let tb = Testbed::new(reference_testbed::Settings {
        seed: 1,
        profile,
        // Time stands almost still: the only churn is the bench's own.
        clock: reference_testbed::clock::Clock::scaled(1_790_000_000.0, 1.0 / 3600.0),
        admins: vec![(ADMIN.0.to_owned(), ADMIN.1.to_owned())],
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let url = format!("http://{}/PLCAPI/", listener.local_addr().expect("bound"));
    tokio::spawn(reference_testbed::serve(tb.clone(), listener, std::future::pending()));
    let settings = plc::Settings {
        request_timeout: Duration::from_secs(120),
        deadline: Duration::from_secs(300),
        ..plc::Settings::default()
    };
    let endpoint = Endpoint { url, username: ADMIN.0.to_owned(), password: ADMIN.1.to_owned() };
    (tb, Arc::new(plc::Plc::new(endpoint, settings).expect("a client")))
}

fn phases(r: &sync::SyncReport) -> String {
    format!("{} / {} / {} ms", r.load_ms, r.match_ms, r.write_ms)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn database(kind: &str) -> (sea_orm::DatabaseConnection, Option<tempfile::TempDir>) {
    match kind {
        "sqlite" => {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let url = format!("sqlite://{}?mode=rwc", dir.path().join("bench.db").display());
            (portolan_core::db::connect_and_migrate(&url, 10).await.expect("SQLite"), Some(dir))
        }
        _ => {
            let url = common::fresh_postgres_database().await;
            (portolan_core::db::connect_and_migrate(&url, 10).await.expect("PostgreSQL"), None)
        }
    }
}

/// Changes 1% of the nodes: a mix of identity changes, departures and nodes going down.
fn churn(tb: &Testbed) {
    let mut state = tb.state();
    let n = state.nodes.len();
    let step = 100;
    for (k, i) in (0..n).step_by(step).enumerate() {
        let next = state.next_node_id;
        let node = state.node_mut(i);
        match k % 5 {
            0 => node.node_id = next,
            1 => node.hostname = format!("renamed-{i}.bench.example"),
            2 => node.ip = std::net::Ipv4Addr::new(203, 0, (i / 256) as u8, (i % 256) as u8),
            3 => node.up = !node.up,
            _ => node.present = false,
        }
        if k % 5 == 0 {
            state.next_node_id += 1;
        }
    }
    state.reindex();
}

async fn cycle(
    client: &plc::Plc,
    db: &sea_orm::DatabaseConnection,
    now: DateTime<Utc>,
) -> (Duration, Duration, sync::SyncReport) {
    let started = Instant::now();
    let (sites, nodes) = tokio::try_join!(client.sites(), client.nodes()).expect("the testbed answers");
    let fetched = started.elapsed();
    let started = Instant::now();
    let report = sync::apply(db, now, &sites, &nodes).await.expect("the sync applies");
    (fetched, started.elapsed(), report)
}

async fn bench(kind: &'static str) -> Vec<Row> {
    let mut rows = Vec::new();
    let (db, _dir) = database(kind).await;
    let (tb, client) = serve(quiet(10_000)).await;
    let t0 = DateTime::from_timestamp(1_790_000_000, 0).expect("a time");
    let (fetch, apply, first) = cycle(&client, &db, t0).await;
    eprintln!("{kind}: first sync {first:?}");
    rows.push(Row {
        database: kind,
        what: "first sync, 10,000 nodes".into(),
        fetch_ms: ms(fetch),
        apply_ms: ms(apply),
        phases: phases(&first),
        rows_written: first.rows_written,
    });
    churn(&tb);
    let (fetch, apply, changed) = cycle(&client, &db, t0 + chrono::TimeDelta::minutes(5)).await;
    eprintln!("{kind}: 1% changed {changed:?}");
    rows.push(Row {
        database: kind,
        what: "cycle, 1% changed".into(),
        fetch_ms: ms(fetch),
        apply_ms: ms(apply),
        phases: phases(&changed),
        rows_written: changed.rows_written,
    });
    let (fetch, apply, same) = cycle(&client, &db, t0 + chrono::TimeDelta::minutes(10)).await;
    assert_eq!(same.rows_written, 0, "an unchanged cycle writes nothing: {same:?}");
    rows.push(Row {
        database: kind,
        what: "cycle, unchanged".into(),
        fetch_ms: ms(fetch),
        apply_ms: ms(apply),
        phases: phases(&same),
        rows_written: same.rows_written,
    });

    // The real world's sensor feed.
    let (db, _dir2) = database(kind).await;
    let (_tb, client) = serve(quiet(0)).await;
    cycle(&client, &db, t0).await;
    let started = Instant::now();
    let feed = client.paths().await.expect("the sensor answers");
    let fetched = started.elapsed();
    let started = Instant::now();
    let report = paths::apply(&db, t0, &feed).await.expect("the paths apply");
    rows.push(Row {
        database: kind,
        what: format!("paths, {} pairs", report.read),
        fetch_ms: ms(fetched),
        apply_ms: ms(started.elapsed()),
        phases: String::new(),
        rows_written: report.written,
    });
    let started = Instant::now();
    let again = paths::apply(&db, t0, &feed).await.expect("the paths apply");
    rows.push(Row {
        database: kind,
        what: "paths, same round again".into(),
        fetch_ms: 0.0,
        apply_ms: ms(started.elapsed()),
        phases: String::new(),
        rows_written: again.written,
    });
    // The next round: every pair measured again.
    let next: Vec<_> = feed
        .iter()
        .cloned()
        .map(|mut p| {
            p.measured_at += 900.0;
            p
        })
        .collect();
    let started = Instant::now();
    let round = paths::apply(&db, t0 + chrono::TimeDelta::minutes(15), &next).await.expect("the paths apply");
    rows.push(Row {
        database: kind,
        what: "paths, next round (all re-measured)".into(),
        fetch_ms: 0.0,
        apply_ms: ms(started.elapsed()),
        phases: String::new(),
        rows_written: round.written,
    });
    rows
}
