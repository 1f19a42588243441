//! `portolan map` end to end: JSON files in, the answer as JSON out; bad files give an error naming the file
//! and the field, and a non-zero exit.

use std::{path::Path, process::Command};

const WORLD: &str = r#"{
  "nodes": [
    {"id": 1, "hostname": "a.example", "site": "alpha", "link_class": "internet2", "load": 0.5,
     "memory_free_mb": 2048, "disk_free_pct": 60, "reliability": 1.0, "metric_age_s": 30},
    {"id": 2, "hostname": "b.example", "site": "beta", "link_class": "commodity", "load": 1.5,
     "memory_free_mb": 2048, "disk_free_pct": 60, "reliability": 0.9, "recent_failures": 1, "metric_age_s": 30},
    {"id": 3, "hostname": "c.example", "site": "gamma", "link_class": "dsl", "load": 0.1,
     "memory_free_mb": 2048, "disk_free_pct": 60, "reliability": 1.0, "metric_age_s": 30}
  ],
  "paths": [
    {"a": 1, "b": 2, "latency_ms": 40, "bandwidth_kbps": 10000, "loss": 0.0, "age_s": 60},
    {"a": 1, "b": 3, "latency_ms": 80, "bandwidth_kbps": 1000, "loss": 0.01, "age_s": 60}
  ]
}"#;

const TOPOLOGY: &str = r#"{
  "nodes": [{"name": "client", "node_type": "dsl"}, {"name": "server"}],
  "links": [{"a": "client", "b": "server", "latency": {"value": 75, "tolerance": 10}}]
}"#;

fn portolan_map(dir: &Path, world: &str, topology: &str) -> std::process::Output {
    std::fs::write(dir.join("world.json"), world).unwrap();
    std::fs::write(dir.join("topology.json"), topology).unwrap();
    Command::new(env!("CARGO_BIN_EXE_portolan"))
        .args(["map", "--world", "world.json", "--topology", "topology.json", "--time-limit", "5"])
        .current_dir(dir)
        .env("PORTOLAN_DATA_DIR", dir)
        .output()
        .expect("portolan runs")
}

#[test]
fn prints_the_answer_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = portolan_map(dir.path(), WORLD, TOPOLOGY);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(answer["status"], "optimal");
    assert_eq!(answer["placement"][0]["hostname"], "c.example");
    assert_eq!(answer["placement"][1]["hostname"], "a.example");
    assert_eq!(answer["links"][0]["matched"]["latency_ms"], 80.0);
    assert_eq!(answer["links"][0]["requested"]["latency"]["value"], 75.0);
    assert_eq!(answer["mip_gap"], 0.0);
}

#[test]
fn explains_an_infeasible_request_in_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let topology = TOPOLOGY.replace("\"value\": 75", "\"value\": 20");
    let out = portolan_map(dir.path(), WORLD, &topology);
    assert!(out.status.success());
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["status"], "infeasible");
    assert_eq!(answer["explanation"][0]["class"], "link");
    assert_eq!(
        answer["explanation"][0]["message"],
        "no node pair for link client–server within latency 20 ± 10 ms: closest is 80 ms between c.example and a.example"
    );
}

#[test]
fn bad_files_name_the_file_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let out = portolan_map(dir.path(), &WORLD.replace("\"load\": 1.5", "\"load\": -1"), TOPOLOGY);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("world.json: nodes[1].load"), "{err}");
    let out = portolan_map(
        dir.path(),
        WORLD,
        &TOPOLOGY.replace("\"server\"}", "\"server\"}, {\"name\": \"server\"}"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("topology.json: nodes[2].name"), "{err}");
    let out = portolan_map(dir.path(), "{", TOPOLOGY);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("world.json is not a valid world"), "{err}");
}
