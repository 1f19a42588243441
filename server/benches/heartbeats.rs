//! Heartbeats bench: how many heartbeats per second the portal takes through its real endpoint, and how
//! much memory it holds while 10,000 service slivers heartbeat, on SQLite and on PostgreSQL.
//!
//! ```sh
//! cargo bench -p server --bench heartbeats                      # ingest on both databases, then RSS on SQLite
//! cargo bench -p server --bench heartbeats -- ingest sqlite
//! HEARTBEAT_SECONDS=30 HEARTBEAT_CONNECTIONS=128 cargo bench -p server --bench heartbeats -- ingest
//! RSS_SECONDS=300 cargo bench -p server --bench heartbeats -- rss   # add `postgres` for PostgreSQL too
//! ```
//!
//! Both parts seed the same world: 10,000 generated nodes (through discovery's own write,
//! `nodes::sync::apply`) and a service sliver on each, up and running with a credential of its own (what
//! bring-up leaves behind). Agents are simulated by this process: each heartbeat is the agent's JSON,
//! posted with the sliver's credential to `POST /agent/v1/heartbeat`.
//!
//! - **ingest**: the portal in this process (its own 2-thread runtime, the default pool of 10), driven by
//!   `HEARTBEAT_CONNECTIONS` (64) keep-alive clients in a second runtime for `HEARTBEAT_SECONDS` (20), the
//!   slivers in turn. It reports heartbeats accepted per second and the latency's 50th and 99th
//!   percentiles, then shuts the portal down (the batched writer flushes what is pending) and checks what
//!   was stored: each sliver's `heartbeats` equals the heartbeats accepted for it, and every node has its
//!   latest metrics and minute rows in `node_metrics`. Target (README): ≥ 5,000 heartbeats/s on SQLite.
//! - **rss**: the portal as its own process (`target/release/portolan serve`; `PORTOLAN_TESTBED_URL` names
//!   a closed port so the embedded testbed is not started), each of the 10,000 agents heartbeating every
//!   10 to 30 s (intervals and phases spread evenly, a new connection per heartbeat as the real agent's
//!   idle connection outlives the portal's 10 s keep-alive), its `VmRSS` read from `/proc` every second for
//!   `RSS_SECONDS` (180). Target: under 200 MB.

#[path = "../tests/common/mod.rs"]
mod common;

use chrono::Utc;
use portolan_agent::protocol::{Credential, Heartbeat, Metrics, StartupState};
use portolan_core::db::entity::{Health, SliverKind, SliverStep, node};
use portolan_core::nodes::sync;
use portolan_core::slivers::storage;
use portolan_core::testbed::{NodeRecord, SiteRecord};
use sea_orm::{ActiveModelTrait, DatabaseConnection, EntityTrait, IntoActiveModel, Set, TransactionTrait};
use server::config::Config;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const SLICE: &str = "site000_portolan";
const SLIVERS: usize = 10_000;
const SITES: usize = 100;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let wants = |word: &str| args.iter().any(|a| a == word);
    let any_part = wants("ingest") || wants("rss");
    let any_db = wants("sqlite") || wants("postgres");
    let mut rows = Vec::new();
    if wants("ingest") || !any_part {
        for database in ["sqlite", "postgres"] {
            if !any_db || wants(database) {
                rows.push(ingest(database));
            }
        }
        print_ingest(&rows);
    }
    let mut memory = Vec::new();
    if wants("rss") || !any_part {
        for database in ["sqlite", "postgres"] {
            if (!any_db && database == "sqlite") || wants(database) {
                memory.push(rss(database));
            }
        }
        print_rss(&memory);
    }
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn runtime(threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// A simulated agent: its sliver and what it sends.
struct Agent {
    sliver_id: i64,
    hostname: String,
    bearer: String,
}

/// A database URL for `kind`: a file in `dir`, or a new database on `DATABASE_URL`'s PostgreSQL server.
async fn database_url(kind: &str, dir: &tempfile::TempDir) -> String {
    match kind {
        "sqlite" => format!("sqlite://{}?mode=rwc", dir.path().join("bench.db").display()),
        _ => common::fresh_postgres_database().await,
    }
}

/// 10,000 nodes at 100 sites, written as discovery writes them.
fn world() -> (Vec<SiteRecord>, Vec<NodeRecord>) {
    let sites = (0..SITES)
        .map(|s| SiteRecord {
            site_id: s as i32 + 1,
            login_base: format!("site{s:03}"),
            name: format!("Site {s}"),
            enabled: true,
            max_slices: None,
            latitude: None,
            longitude: None,
        })
        .collect();
    let nodes = (0..SLIVERS)
        .map(|i| NodeRecord {
            node_id: i as i32 + 1,
            hostname: format!("node{i}.site{:03}.bench.example", i % SITES),
            site_id: (i % SITES) as i32 + 1,
            boot_state: "boot".into(),
            ip: Some(format!("10.{}.{}.{}", i / 65_536, (i / 256) % 256, i % 256)),
            host_key: Some(format!("ssh-ed25519 KEY{i}")),
            last_contact: None,
            tags: BTreeMap::new(),
        })
        .collect();
    (sites, nodes)
}

/// Seeds the world and a service sliver per node, up with a fresh credential; returns their agents.
async fn seed(db: &DatabaseConnection) -> Vec<Agent> {
    let now = Utc::now();
    let (sites, records) = world();
    sync::apply(db, now, &sites, &records).await.expect("the nodes are written");
    let nodes = node::Entity::find().all(db).await.expect("the nodes");
    let txn = db.begin().await.expect("a transaction");
    let mut agents = Vec::with_capacity(nodes.len());
    for node in nodes {
        let row = storage::ensure(&txn, SliverKind::Service, SLICE, node.id, now).await.expect("a sliver");
        let credential = Credential::generate(row.id);
        let mut active = row.into_active_model();
        active.step = Set(SliverStep::Ready);
        active.health = Set(Health::Up);
        active.attempt_started_at = Set(Some(now));
        active.up_at = Set(Some(now));
        active.last_heartbeat_at = Set(Some(now));
        active.credential_hash = Set(Some(credential.secret_hash()));
        let row = active.update(&txn).await.expect("the sliver is up");
        agents.push(Agent { sliver_id: row.id, hostname: node.hostname, bearer: credential.expose() });
    }
    txn.commit().await.expect("the slivers are written");
    agents
}

/// The agent's heartbeat, its counters growing with `elapsed`.
fn heartbeat(agent: &Agent, sequence: u64, elapsed: Duration) -> Vec<u8> {
    let ms = elapsed.as_millis() as u64;
    let beat = Heartbeat {
        slice: SLICE.into(),
        node: agent.hostname.clone(),
        sequence,
        agent_version: "bench".into(),
        manifest_version: None,
        manifest_error: None,
        startup: StartupState::None,
        metrics: Metrics {
            load1: Some(0.5 + (sequence % 7) as f64 / 10.0),
            memory_total_mb: Some(2048.0),
            memory_free_mb: Some(1024.0),
            disk_free_pct: Some(40.0),
            net_rx_bytes: Some(ms * 1000),
            net_tx_bytes: Some(ms * 500),
        },
    };
    serde_json::to_vec(&beat).expect("a heartbeat serializes")
}

/// What the agents saw: heartbeats accepted per agent, errors, latencies (µs).
struct Tally {
    accepted: Vec<AtomicU64>,
    errors: AtomicU64,
    /// The first error, to show.
    first_error: std::sync::OnceLock<String>,
    latencies: std::sync::Mutex<Vec<u32>>,
}

impl Tally {
    fn new(agents: usize) -> Arc<Self> {
        Arc::new(Self {
            accepted: (0..agents).map(|_| AtomicU64::new(0)).collect(),
            errors: AtomicU64::new(0),
            first_error: std::sync::OnceLock::new(),
            latencies: std::sync::Mutex::new(Vec::new()),
        })
    }

    fn total(&self) -> u64 {
        self.accepted.iter().map(|a| a.load(Ordering::Relaxed)).sum()
    }

    /// The `q` quantile of the latencies, in ms.
    fn quantile(&self, q: f64) -> f64 {
        let mut all = self.latencies.lock().expect("latencies").clone();
        all.sort_unstable();
        let index = ((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1));
        all.get(index).map_or(0.0, |&us| f64::from(us) / 1000.0)
    }
}

/// Posts one heartbeat of agent `index`; records its outcome in `tally`.
async fn send(
    client: &reqwest::Client,
    url: &str,
    agents: &[Agent],
    index: usize,
    body: Vec<u8>,
    tally: &Tally,
) {
    let started = Instant::now();
    let response = client
        .post(url)
        .bearer_auth(&agents[index].bearer)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    let outcome = match response {
        Ok(r) if r.status() == reqwest::StatusCode::OK => {
            r.bytes().await.map(|_| ()).map_err(|e| e.to_string())
        }
        Ok(r) => Err(format!("HTTP {}: {}", r.status(), r.text().await.unwrap_or_default())),
        Err(e) => Err(format!("{e:?}")),
    };
    match outcome {
        Ok(()) => {
            tally.accepted[index].fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            tally.errors.fetch_add(1, Ordering::Relaxed);
            let _ = tally.first_error.set(e);
        }
    }
    let us = u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX);
    tally.latencies.lock().expect("latencies").push(us);
}

// ---------------------------------------------------------------------------------------------- ingest

struct IngestRow {
    database: &'static str,
    connections: u64,
    seconds: f64,
    accepted: u64,
    errors: u64,
    p50: f64,
    p99: f64,
    stored: i64,
    metric_rows: i64,
    nodes_with_load: i64,
}

/// The portal serving in this process.
struct Portal {
    addr: SocketAddr,
    db: DatabaseConnection,
    stop: tokio::sync::oneshot::Sender<()>,
    served: tokio::task::JoinHandle<()>,
}

impl Portal {
    /// Stops it as Ctrl-C does; returns once it stopped, the pending heartbeats written.
    fn stop(self, runtime: &tokio::runtime::Runtime) -> DatabaseConnection {
        let _ = self.stop.send(());
        runtime.block_on(self.served).expect("the portal stops");
        self.db
    }
}

/// Starts the portal on `url` in `runtime`.
fn start_portal(runtime: &tokio::runtime::Runtime, dir: &tempfile::TempDir, url: String) -> Portal {
    let config = Config {
        listen: "127.0.0.1:0".parse().expect("an address"),
        data_dir: dir.path().to_owned(),
        database_url: Some(url),
        agent_binary: Some(env!("CARGO_BIN_EXE_portolan").into()),
        ..Config::default()
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (addr, db, served) = runtime.block_on(async {
        let db = server::open_database(&config).await.expect("the database");
        let listener = tokio::net::TcpListener::bind(config.listen).await.expect("a port");
        let addr = listener.local_addr().expect("bound");
        let state = server::app_state(&config, db.clone(), None);
        let served = tokio::spawn(async move {
            let stop = async {
                let _ = rx.await;
            };
            server::serve_state(&config, state, listener, stop).await.expect("the portal serves");
        });
        (addr, db, served)
    });
    Portal { addr, db, stop: tx, served }
}

fn ingest(database: &'static str) -> IngestRow {
    let seconds = env("HEARTBEAT_SECONDS", 20);
    let connections = env("HEARTBEAT_CONNECTIONS", 64);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let portal = runtime(2);
    let url = portal.block_on(database_url(database, &dir));
    let served = start_portal(&portal, &dir, url);
    let started = Instant::now();
    let agents = Arc::new(portal.block_on(seed(&served.db)));
    eprintln!("{database}: {} slivers seeded in {:.1} s", agents.len(), started.elapsed().as_secs_f64());

    let tally = Tally::new(agents.len());
    let load = runtime(2);
    let elapsed = load.block_on(drive(served.addr, agents.clone(), tally.clone(), connections, seconds));
    let db = served.stop(&portal);
    let (stored, metric_rows, nodes_with_load) = portal.block_on(verify(&db, &agents, &tally));
    IngestRow {
        database,
        connections,
        seconds: elapsed.as_secs_f64(),
        accepted: tally.total(),
        errors: tally.errors.load(Ordering::Relaxed),
        p50: tally.quantile(0.50),
        p99: tally.quantile(0.99),
        stored,
        metric_rows,
        nodes_with_load,
    }
}

/// `connections` clients post heartbeats back to back, the slivers in turn, for `seconds`.
async fn drive(
    addr: SocketAddr,
    agents: Arc<Vec<Agent>>,
    tally: Arc<Tally>,
    connections: u64,
    seconds: u64,
) -> Duration {
    let url = format!("http://{addr}/agent/v1/heartbeat");
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (url, agents, tally, next) = (url.clone(), agents.clone(), tally.clone(), next.clone());
        workers.spawn(async move {
            let client = reqwest::Client::builder().pool_max_idle_per_host(1).build().expect("a client");
            while Instant::now() < deadline {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let index = (n % agents.len() as u64) as usize;
                let body = heartbeat(&agents[index], n / agents.len() as u64 + 1, started.elapsed());
                send(&client, &url, &agents, index, body, &tally).await;
            }
        });
    }
    while workers.join_next().await.is_some() {}
    started.elapsed()
}

/// Checks what the portal stored against what it accepted; returns (heartbeats stored, `node_metrics`
/// rows, nodes with a load).
async fn verify(db: &DatabaseConnection, agents: &[Agent], tally: &Tally) -> (i64, i64, i64) {
    use portolan_core::db::entity::sliver;
    let stored: HashMap<i64, i64> = sliver::Entity::find()
        .all(db)
        .await
        .expect("the slivers")
        .into_iter()
        .map(|s| (s.id, s.heartbeats))
        .collect();
    let wrong = agents
        .iter()
        .zip(&tally.accepted)
        .filter(|(a, n)| stored.get(&a.sliver_id).copied() != Some(n.load(Ordering::Relaxed) as i64))
        .count();
    assert_eq!(wrong, 0, "{wrong} slivers' stored heartbeats differ from those accepted");
    let total: i64 = stored.values().sum();
    assert_eq!(total as u64, tally.total(), "every accepted heartbeat is counted");
    let metric_rows = common::scalar(db, "SELECT COUNT(*) FROM node_metrics").await;
    let nodes_with_metrics =
        common::scalar(db, "SELECT COUNT(DISTINCT node_id) FROM node_metrics WHERE width_s = 60").await;
    let loaded =
        common::scalar(db, "SELECT COUNT(*) FROM nodes WHERE load IS NOT NULL AND metrics_at IS NOT NULL")
            .await;
    let beaten = tally.accepted.iter().filter(|n| n.load(Ordering::Relaxed) > 0).count() as i64;
    assert_eq!(nodes_with_metrics, beaten, "every node that heartbeat has minute rows");
    assert_eq!(loaded, beaten, "every node that heartbeat has its latest metrics");
    (total, metric_rows, loaded)
}

fn print_ingest(rows: &[IngestRow]) {
    println!();
    println!(
        "{SLIVERS} service slivers, each with its own credential; portal and clients on the same 2 cores"
    );
    println!();
    println!(
        "| database | clients | seconds | heartbeats accepted | heartbeats/s | p50 | p99 | errors | stored (sum) | node_metrics rows | nodes with metrics |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {:.1} | {} | {:.0} | {:.2} ms | {:.2} ms | {} | {} | {} | {} |",
            r.database,
            r.connections,
            r.seconds,
            r.accepted,
            r.accepted as f64 / r.seconds,
            r.p50,
            r.p99,
            r.errors,
            r.stored,
            r.metric_rows,
            r.nodes_with_load
        );
    }
}

// ---------------------------------------------------------------------------------------------- rss

struct RssRow {
    database: &'static str,
    seconds: u64,
    idle_mb: f64,
    peak_mb: f64,
    steady_mb: f64,
    rate: f64,
    errors: u64,
}

/// The resident set of process `pid`, in MB.
fn vm_rss(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// A port nothing listens on (bound, then released).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    listener.local_addr().expect("bound").port()
}

/// `portolan serve` on `url`, the embedded testbed replaced by a closed port.
fn spawn_portal(dir: &tempfile::TempDir, url: &str, addr: SocketAddr) -> std::process::Child {
    let log = std::fs::File::create(dir.path().join("portal.log")).expect("a log file");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_portolan"))
        .arg("serve")
        .env("DATABASE_URL", url)
        .env("PORTOLAN_DATABASE_URL", url)
        .env("PORTOLAN_DATA_DIR", dir.path())
        .env("PORTOLAN_LISTEN", addr.to_string())
        .env("PORTOLAN_TESTBED_URL", format!("http://127.0.0.1:{}/PLCAPI/", free_port()))
        .env("PORTOLAN_TESTBED_USER", "nobody@bench.example")
        .env("PORTOLAN_TESTBED_PASSWORD", "none")
        .env("PORTOLAN_LOG", "warn")
        .stderr(log)
        .spawn()
        .expect("target/release/portolan runs");
    let started = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(started.elapsed() < Duration::from_secs(60), "the portal did not start (see portal.log)");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

fn rss(database: &'static str) -> RssRow {
    let seconds = env("RSS_SECONDS", 180);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let load = runtime(2);
    let url = load.block_on(database_url(database, &dir));
    let agents = load.block_on(async {
        let db = portolan_core::db::connect_and_migrate(&url, 5).await.expect("the database");
        let agents = seed(&db).await;
        db.close().await.expect("closed");
        Arc::new(agents)
    });
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("an address");
    let mut portal = spawn_portal(&dir, &url, addr);
    std::thread::sleep(Duration::from_secs(2));
    let idle_mb = vm_rss(portal.id()).expect("the portal's VmRSS");
    eprintln!("{database}: portal pid {} at {idle_mb:.1} MB before heartbeats", portal.id());

    let tally = Tally::new(agents.len());
    let samples = load.block_on(heartbeat_fleet(addr, agents.clone(), tally.clone(), portal.id(), seconds));
    let exited = portal.try_wait().expect("the portal's status");
    if exited.is_some() || tally.first_error.get().is_some() {
        let log = std::fs::read_to_string(dir.path().join("portal.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        let error = tally.first_error.get().map_or("none", String::as_str);
        eprintln!(
            "{database}: first error: {error}; the portal's log ends (last line first):\n{}",
            tail.join("\n")
        );
    }
    assert!(exited.is_none(), "the portal exited by itself with {exited:?}");
    let _ = std::process::Command::new("kill").args(["-TERM", &portal.id().to_string()]).status();
    let status = portal.wait().expect("the portal exits");
    assert!(status.success(), "the portal stopped with {status}");
    let db = load.block_on(portolan_core::db::connect(&url, 2)).expect("the database");
    load.block_on(verify(&db, &agents, &tally));

    let peak_mb = samples.iter().copied().fold(idle_mb, f64::max);
    let last = &samples[samples.len() * 2 / 3..];
    RssRow {
        database,
        seconds,
        idle_mb,
        peak_mb,
        steady_mb: last.iter().sum::<f64>() / last.len().max(1) as f64,
        rate: tally.total() as f64 / seconds as f64,
        errors: tally.errors.load(Ordering::Relaxed),
    }
}

/// Every agent heartbeats every 10 to 30 s for `seconds`; returns the portal's RSS, sampled every second.
async fn heartbeat_fleet(
    addr: SocketAddr,
    agents: Arc<Vec<Agent>>,
    tally: Arc<Tally>,
    pid: u32,
    seconds: u64,
) -> Vec<f64> {
    let url = Arc::new(format!("http://{addr}/agent/v1/heartbeat"));
    // A new connection per heartbeat, as a real agent's after the portal closed its idle one; each client
    // from its own loopback address, or the closed connections' TIME_WAIT would exhaust the local ports.
    let clients: Arc<Vec<reqwest::Client>> = Arc::new(
        (1..=32)
            .map(|k| {
                let from = std::net::IpAddr::from([127, 0, 1, k]);
                let builder = reqwest::Client::builder().pool_max_idle_per_host(0).local_address(from);
                builder.build().expect("a client")
            })
            .collect(),
    );
    let started = Instant::now();
    let stop = tokio_util::sync::CancellationToken::new();
    let n = agents.len();
    let mut fleet = tokio::task::JoinSet::new();
    for index in 0..n {
        let (url, agents, tally, clients, stop) =
            (url.clone(), agents.clone(), tally.clone(), clients.clone(), stop.clone());
        fleet.spawn(async move {
            let interval = Duration::from_millis(10_000 + (index as u64 * 7_919 % 20_001));
            tokio::time::sleep(interval.mul_f64(index as f64 / n as f64)).await;
            let mut ticker = tokio::time::interval(interval);
            let mut sequence = 0;
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    () = stop.cancelled() => break,
                }
                sequence += 1;
                let body = heartbeat(&agents[index], sequence, started.elapsed());
                send(&clients[index % clients.len()], &url, &agents, index, body, &tally).await;
            }
        });
    }
    let mut samples = Vec::new();
    for second in 1..=seconds {
        tokio::time::sleep_until((started + Duration::from_secs(second)).into()).await;
        let Some(mb) = vm_rss(pid) else {
            eprintln!("  the portal exited after {second} s");
            break;
        };
        samples.push(mb);
        if second % 30 == 0 {
            eprintln!(
                "  {:>4} s: {:.1} MB, {} heartbeats",
                started.elapsed().as_secs(),
                samples.last().unwrap_or(&0.0),
                tally.total()
            );
        }
    }
    // The agents stop; heartbeats in flight are answered first.
    stop.cancel();
    while fleet.join_next().await.is_some() {}
    samples
}

fn print_rss(rows: &[RssRow]) {
    println!();
    println!("{SLIVERS} service slivers heartbeating every 10–30 s; `portolan serve` as its own process");
    println!();
    println!(
        "| database | seconds | RSS before heartbeats | peak RSS | steady RSS (last third) | heartbeats/s | errors |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {:.1} MB | {:.1} MB | {:.1} MB | {:.0} | {} |",
            r.database, r.seconds, r.idle_mb, r.peak_mb, r.steady_mb, r.rate, r.errors
        );
    }
}
