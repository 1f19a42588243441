//! Benchmark of the reference testbed over real HTTP and XML-RPC: `GetNodes` latency (all nodes, and a
//! filtered subset) and bind/unbind throughput, on the real PlanetLab world and a generated 10,000-node one.
//! Run with `cargo bench -p reference-testbed --bench testbed`; it prints a table.

use dxr::{MethodCall, MethodResponse, Value};
use reference_testbed::{Settings, Testbed, clock::Clock, profile::Profile};
use std::time::{Duration, Instant};

fn s(text: &str) -> Value {
    Value::String(text.to_owned())
}

fn st(pairs: &[(&str, Value)]) -> Value {
    Value::Struct(pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
}

fn admin() -> Value {
    st(&[("AuthMethod", s("password")), ("Username", s("bench@plc.test")), ("AuthString", s("pw"))])
}

struct Client {
    http: reqwest::Client,
    url: String,
}

impl Client {
    async fn call(&self, method: &str, params: Vec<Value>) -> Value {
        let body = MethodCall { name: method.into(), params }.to_xml().unwrap();
        let text = self.http.post(&self.url).body(body).send().await.unwrap().text().await.unwrap();
        MethodResponse::from_xml(&text).unwrap_or_else(|_| panic!("{method} failed: {text:.300}")).value
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1000.0
}

async fn latency(client: &Client, runs: usize, params: impl Fn() -> Vec<Value>) -> (f64, f64, usize) {
    let mut times = Vec::with_capacity(runs);
    let mut rows = 0;
    for _ in 0..runs {
        let start = Instant::now();
        let answer = client.call("GetNodes", params()).await;
        times.push(start.elapsed());
        if let Value::Array(a) = answer {
            rows = a.len();
        }
    }
    times.sort();
    (percentile(&times, 0.5), percentile(&times, 0.95), rows)
}

async fn bench_world(name: &str, nodes: usize) {
    let mut profile = Profile::mild();
    profile.world.nodes = nodes;
    profile.churn.initially_down = 0.0;
    let settings = Settings {
        seed: 1,
        profile,
        clock: Clock::scaled(1_790_000_000.0, 1.0),
        admins: vec![("bench@plc.test".into(), "pw".into())],
    };
    let built = Instant::now();
    let tb = Testbed::new(settings);
    let build_s = built.elapsed().as_secs_f64();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/PLCAPI/", listener.local_addr().unwrap());
    tokio::spawn(reference_testbed::serve(tb.clone(), listener, std::future::pending()));
    let client = Client { http: reqwest::Client::new(), url };
    let base = tb.world.sites[0].login_base.clone();
    let hostnames: Vec<String> = tb.world.nodes.iter().map(|n| n.hostname.clone()).collect();

    let (all_p50, all_p95, all_rows) = latency(&client, 10, || vec![admin()]).await;
    let filter = || vec![admin(), st(&[("hostname", s("*.edu")), ("-LIMIT", Value::Integer(50))])];
    let (f_p50, f_p95, f_rows) = latency(&client, 100, filter).await;
    let by_site = || {
        vec![admin(), st(&[("site_id", Value::Integer(1))]), Value::Array(vec![s("node_id"), s("hostname")])]
    };
    let (s_p50, s_p95, s_rows) = latency(&client, 100, by_site).await;

    let slice = format!("{base}_bench");
    client
        .call("AddSlice", vec![admin(), st(&[("name", s(&slice)), ("description", s("b")), ("url", s("u"))])])
        .await;
    let calls = 1000.min(hostnames.len() * 2);
    let start = Instant::now();
    for host in hostnames.iter().take(calls / 2) {
        let node = Value::Array(vec![s(host)]);
        client.call("AddSliceToNodes", vec![admin(), s(&slice), node.clone()]).await;
        client.call("DeleteSliceFromNodes", vec![admin(), s(&slice), node]).await;
    }
    let sequential = calls as f64 / start.elapsed().as_secs_f64();

    let start = Instant::now();
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (http, url, slice, hosts) =
                (client.http.clone(), client.url.clone(), slice.clone(), hostnames.clone());
            tokio::spawn(async move {
                let client = Client { http, url };
                for k in 0..calls / 16 {
                    let node = Value::Array(vec![s(&hosts[(w * 97 + k) % hosts.len()])]);
                    client.call("AddSliceToNodes", vec![admin(), s(&slice), node.clone()]).await;
                    client.call("DeleteSliceFromNodes", vec![admin(), s(&slice), node]).await;
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let concurrent = (calls / 16 * 16) as f64 / start.elapsed().as_secs_f64();

    println!(
        "| {name} | {:.2} s | GetNodes all ({all_rows} rows) | {all_p50:.1} ms | {all_p95:.1} ms |",
        build_s
    );
    println!("| {name} | | GetNodes `*.edu`, -LIMIT 50 ({f_rows} rows) | {f_p50:.2} ms | {f_p95:.2} ms |");
    println!("| {name} | | GetNodes one site, 2 fields ({s_rows} rows) | {s_p50:.2} ms | {s_p95:.2} ms |");
    println!("| {name} | | bind+unbind, 1 client | {sequential:.0} calls/s | |");
    println!("| {name} | | bind+unbind, 8 clients | {concurrent:.0} calls/s | |");
}

#[tokio::main]
async fn main() {
    println!("| world | start | measure | p50 / rate | p95 |");
    println!("|---|---|---|---|---|");
    bench_world("PlanetLab (684)", 0).await;
    bench_world("generated (10,000)", 10_000).await;
}
