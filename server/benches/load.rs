//! Load bench: the portal under `wrk`, on SQLite and on PostgreSQL.
//!
//! ```sh
//! cargo bench -p server --bench load                       # both databases, 10 s per row, 200 connections
//! LOAD_SECONDS=20 LOAD_CONNECTIONS=100 cargo bench -p server --bench load -- sqlite
//! ```
//!
//! For each database it starts the portal in this process (release build, the default pool of 10
//! connections, on a fresh database: a temporary SQLite file, or a new database on the PostgreSQL server of
//! `DATABASE_URL`, as the integration tests do), registers a user with three projects and an API token, and
//! runs `wrk` (Debian: `apt-get install wrk`) against
//!
//! - `GET /login`: a public page, no session;
//! - `GET /`: the dashboard, logged in (the caller, their projects and join requests);
//! - `GET /api/v1/projects`: the REST API with a bearer token;
//!
//! then prints one table: requests per second and the 50th and 99th percentile latency. `wrk` runs on the
//! same machine, so the figures include its share of the CPU. Arguments filter the databases (`sqlite`,
//! `postgres`).

#[path = "../tests/common/mod.rs"]
mod common;

use reqwest::{Client, StatusCode};
use serde_json::Value;
use server::config::Config;
use std::{net::SocketAddr, process::Command, time::Duration};

struct Row {
    database: &'static str,
    what: &'static str,
    rps: f64,
    p50: String,
    p99: String,
    errors: u64,
}

fn main() {
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let seconds: u64 = env("LOAD_SECONDS", 10);
    let connections: u64 = env("LOAD_CONNECTIONS", 200);
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("the load bench needs wrk on the PATH (Debian: apt-get install -y wrk)");
        std::process::exit(2);
    }
    let mut rows = Vec::new();
    for database in ["sqlite", "postgres"] {
        if !filters.is_empty() && !filters.iter().any(|f| f == database) {
            continue;
        }
        rows.extend(bench(database, seconds, connections));
    }
    println!();
    println!("{connections} connections, {seconds} s each, wrk -t2 on the same machine");
    println!();
    println!("| database | request | req/s | p50 | p99 | errors |");
    println!("|---|---|---:|---:|---:|---:|");
    for r in &rows {
        println!("| {} | {} | {:.0} | {} | {} | {} |", r.database, r.what, r.rps, r.p50, r.p99, r.errors);
    }
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn bench(database: &'static str, seconds: u64, connections: u64) -> Vec<Row> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = runtime.block_on(database_url(database, &dir));
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        database_url: Some(url),
        ..Config::default()
    };
    let (addr, cookie, token) = runtime.block_on(async {
        let db = server::open_database(&config).await.unwrap();
        let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let served = config.clone();
        tokio::spawn(async move {
            server::serve(&served, db, listener, std::future::pending()).await.unwrap();
        });
        let (cookie, token) = prepare(addr).await;
        (addr, cookie, token)
    });
    let cases = [
        ("GET /login", "/login", None),
        ("GET / (logged in)", "/", Some(format!("Cookie: {cookie}"))),
        ("GET /api/v1/projects (token)", "/api/v1/projects", Some(format!("Authorization: Bearer {token}"))),
    ];
    let rows = cases
        .into_iter()
        .map(|(what, path, header)| {
            eprintln!("{database}: {what} …");
            let (rps, p50, p99, errors) =
                wrk(&format!("http://{addr}{path}"), header.as_deref(), seconds, connections);
            Row { database, what, rps, p50, p99, errors }
        })
        .collect();
    runtime.shutdown_timeout(Duration::from_secs(5));
    rows
}

async fn database_url(database: &str, dir: &tempfile::TempDir) -> String {
    if database == "sqlite" {
        return format!("sqlite://{}?mode=rwc", dir.path().join("bench.db").display());
    }
    common::fresh_postgres_database().await
}

/// Registers a user with three projects; returns their session cookie and an API token.
async fn prepare(addr: SocketAddr) -> (String, String) {
    let client =
        Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let call = |name: &str, form: Vec<(&str, &str)>| {
        let request = client.post(format!("http://{addr}/sf/{name}")).form(&form);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            let cookie = response.headers().get("set-cookie").map(|c| c.to_str().unwrap().to_owned());
            let body: Value = response.json().await.unwrap_or(Value::Null);
            assert_eq!(status, StatusCode::OK, "{body}");
            (cookie, body)
        }
    };
    let (cookie, _) = call(
        "register",
        vec![
            ("email", "bench@example.org"),
            ("name", "Bench"),
            ("password", "a long bench password, surely"),
        ],
    )
    .await;
    let cookie = cookie.expect("a session cookie").split(';').next().unwrap().to_owned();
    for name in ["alpha", "beta", "gamma"] {
        call("create_project", vec![("name", name), ("description", "a bench project")]).await;
    }
    let (_, token) = call("create_token", vec![("name", "bench"), ("scope", "read")]).await;
    let token = token["secret"].as_str().unwrap().to_owned();
    // The pages answer what they should before they are timed.
    let page = client.get(format!("http://{addr}/")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("gamma"), "the dashboard does not show the user's projects");
    let api =
        Client::new().get(format!("http://{addr}/api/v1/projects")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(api.status(), StatusCode::OK);
    (cookie, token)
}

/// Runs wrk; returns req/s, p50, p99 and the count of errors (socket errors and non-2xx/3xx answers).
fn wrk(url: &str, header: Option<&str>, seconds: u64, connections: u64) -> (f64, String, String, u64) {
    let mut command = Command::new("wrk");
    command.args([
        "-t2",
        &format!("-c{connections}"),
        &format!("-d{seconds}s"),
        "--latency",
        "--timeout",
        "10s",
    ]);
    if let Some(header) = header {
        command.args(["-H", header]);
    }
    let output = command.arg(url).output().expect("wrk runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "wrk failed: {text}{}", String::from_utf8_lossy(&output.stderr));
    let field = |prefix: &str| {
        text.lines().find_map(|l| l.trim().strip_prefix(prefix).map(|rest| rest.trim().to_owned()))
    };
    let rps = field("Requests/sec:").and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let p50 = field("50%").unwrap_or_default();
    let p99 = field("99%").unwrap_or_default();
    let non_2xx: u64 = field("Non-2xx or 3xx responses:").and_then(|v| v.parse().ok()).unwrap_or(0);
    let socket: u64 = field("Socket errors:")
        .map(|v| v.split(',').filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    (rps, p50, p99, non_2xx + socket)
}
