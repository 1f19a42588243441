//! The mapper's input about the testbed: candidate nodes and measured paths, as plain values.
//!
//! A [`MapWorld`] is what the portal knows at mapping time (the free pool with its latest metrics, and the
//! sensor's latest path measurements). Keeping it a plain serde value, with no database behind it, makes the
//! mapper testable and benchable on its own, and makes it the JSON `--world` file of `portolan map`. The
//! reference testbed exports the same shape (`World::to_map_world`), so the two formats meet.

use crate::{
    error::{AppError, AppResult},
    topology::LinkClass,
};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

/// Candidate testbed nodes and the measured paths between them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapWorld {
    pub nodes: Vec<CandidateNode>,
    #[serde(default)]
    pub paths: Vec<MeasuredPath>,
}

/// A testbed node as the mapper sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CandidateNode {
    /// Portolan's persistent node id.
    pub id: u64,
    pub hostname: String,
    /// The site's login base, e.g. `princeton`.
    pub site: String,
    pub link_class: LinkClass,
    /// Load average (the testbed's 5-minute figure); `null` (or absent) when unknown.
    #[serde(default)]
    pub load: Option<f64>,
    /// Free memory in MB; `null` when unknown.
    #[serde(default)]
    pub memory_free_mb: Option<f64>,
    /// Free disk as a percentage of the disk (0–100); `null` when unknown.
    #[serde(default)]
    pub disk_free_pct: Option<f64>,
    /// Fraction of recent sliver set-ups on this node that came up end to end (0–1; 1 for an untried node).
    pub reliability: f64,
    /// Set-ups that failed on this node recently (for instance in the experiment's previous attempt).
    #[serde(default)]
    pub recent_failures: u32,
    /// Seconds since the node's metrics were last reported; `null` when none ever were.
    #[serde(default)]
    pub metric_age_s: Option<f64>,
}

/// A measured path between two nodes. Paths are symmetric: one entry serves both directions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeasuredPath {
    pub a: u64,
    pub b: u64,
    /// Round-trip time in milliseconds.
    pub latency_ms: f64,
    /// Available bandwidth in kbit/s.
    pub bandwidth_kbps: f64,
    /// Loss rate, a fraction (0–1).
    pub loss: f64,
    /// Seconds since the measurement.
    pub age_s: f64,
}

impl MapWorld {
    /// Checks ids, references and ranges; the error names the entry (`nodes[3].load`, `paths[10].b`).
    pub fn validate(&self) -> AppResult<()> {
        let mut ids = HashMap::new();
        let mut hosts = HashSet::new();
        for (i, node) in self.nodes.iter().enumerate() {
            node.validate(i)?;
            if let Some(first) = ids.insert(node.id, i) {
                let msg = format!("node id {} is used by nodes[{first}] and nodes[{i}]", node.id);
                return Err(AppError::invalid(&format!("nodes[{i}].id"), msg));
            }
            if !hosts.insert(node.hostname.as_str()) {
                let msg = format!("hostname {} appears twice", node.hostname);
                return Err(AppError::invalid(&format!("nodes[{i}].hostname"), msg));
            }
        }
        let mut pairs = HashMap::new();
        for (i, path) in self.paths.iter().enumerate() {
            path.validate(i, &ids)?;
            if let Some(first) = pairs.insert(pair_key(path.a, path.b), i) {
                let msg =
                    format!("path {}–{} is measured twice (paths[{first}] and paths[{i}])", path.a, path.b);
                return Err(AppError::invalid(&format!("paths[{i}]"), msg));
            }
        }
        Ok(())
    }
}

/// The key of an unordered node pair.
pub fn pair_key(a: u64, b: u64) -> (u64, u64) {
    if a <= b { (a, b) } else { (b, a) }
}

fn check(value: f64, low: f64, high: f64, field: &str, what: &str) -> AppResult<()> {
    if value.is_finite() && value >= low && value <= high {
        Ok(())
    } else {
        let name = field.rsplit('.').next().unwrap_or(field);
        let msg = format!("{what}: {name} must be between {low} and {high}, not {value}");
        Err(AppError::invalid(field, msg))
    }
}

impl CandidateNode {
    fn validate(&self, i: usize) -> AppResult<()> {
        let field = |f: &str| format!("nodes[{i}].{f}");
        if self.hostname.is_empty() || self.hostname.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(AppError::invalid(&field("hostname"), format!("node {}: bad hostname", self.id)));
        }
        if self.site.is_empty() {
            return Err(AppError::invalid(&field("site"), format!("node {}: empty site", self.hostname)));
        }
        let what = format!("node {}", self.hostname);
        let known = |value: Option<f64>, low, high, name: &str| match value {
            Some(v) => check(v, low, high, &field(name), &what),
            None => Ok(()),
        };
        known(self.load, 0.0, 1e6, "load")?;
        known(self.memory_free_mb, 0.0, 1e12, "memory_free_mb")?;
        known(self.disk_free_pct, 0.0, 100.0, "disk_free_pct")?;
        check(self.reliability, 0.0, 1.0, &field("reliability"), &what)?;
        known(self.metric_age_s, 0.0, 1e12, "metric_age_s")
    }
}

impl MeasuredPath {
    fn validate(&self, i: usize, ids: &HashMap<u64, usize>) -> AppResult<()> {
        let field = |f: &str| format!("paths[{i}].{f}");
        for (end, id) in [("a", self.a), ("b", self.b)] {
            if !ids.contains_key(&id) {
                let msg = format!("path {}–{} names node {id}, which is not in the world", self.a, self.b);
                return Err(AppError::invalid(&field(end), msg));
            }
        }
        if self.a == self.b {
            return Err(AppError::invalid(&field("b"), format!("path {}–{} is a self path", self.a, self.b)));
        }
        let what = format!("path {}–{}", self.a, self.b);
        check(self.latency_ms, 0.0, 1e7, &field("latency_ms"), &what)?;
        check(self.bandwidth_kbps, 0.0, 1e12, &field("bandwidth_kbps"), &what)?;
        check(self.loss, 0.0, 1.0, &field("loss"), &what)?;
        check(self.age_s, 0.0, 1e12, &field("age_s"), &what)
    }
}
