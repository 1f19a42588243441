//! Operator-set policy: admission thresholds (hard filters applied before any model is built) and the
//! weights of the objective's node terms. Kept apart from the world and the topology because neither the
//! testbed nor the researcher decides them. JSON: the `--policy` file of `portolan map`; every field optional.

use super::world::CandidateNode;
use model::error::{AppError, AppResult};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    pub admission: Admission,
    pub weights: Weights,
}

/// A node must meet every threshold to be a candidate at all.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Admission {
    /// Highest load average.
    pub max_load: f64,
    /// Least free disk, in percent.
    pub min_disk_free_pct: f64,
    /// Least free memory, in MB.
    pub min_memory_free_mb: f64,
    /// Oldest acceptable node metrics, in seconds.
    pub max_metric_age_s: f64,
    /// Oldest acceptable path measurement, in seconds; older paths count as unmeasured.
    pub max_path_age_s: f64,
    /// Nodes with at least this many recent failures are excluded (fewer are penalised; 0 disables).
    pub exclude_after_failures: u32,
}

impl Default for Admission {
    fn default() -> Self {
        Self {
            max_load: 4.0,
            min_disk_free_pct: 10.0,
            min_memory_free_mb: 256.0,
            max_metric_age_s: 900.0,
            max_path_age_s: 3_600.0,
            exclude_after_failures: 2,
        }
    }
}

/// Weights of the node and site terms of the objective (the link terms are weighted per link).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Weights {
    /// Per unit of load / max_load.
    pub load: f64,
    /// Per unit of (1 − reliability).
    pub unreliability: f64,
    /// Per recent failure.
    pub recent_failure: f64,
    /// Per node beyond the first at one site.
    pub site_extra: f64,
    /// Multiplies every link's deviation terms.
    pub link: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Self { load: 1.0, unreliability: 2.0, recent_failure: 1.0, site_extra: 0.5, link: 1.0 }
    }
}

/// Why a node failed admission, for explanations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rejection {
    Load,
    Disk,
    Memory,
    MetricAge,
    Failures,
}

impl Rejection {
    pub fn describe(self, a: &Admission) -> String {
        match self {
            Rejection::Load => format!("load above {}", a.max_load),
            Rejection::Disk => format!("free disk below {}%", a.min_disk_free_pct),
            Rejection::Memory => format!("free memory below {} MB", a.min_memory_free_mb),
            Rejection::MetricAge => format!("metrics older than {} s", a.max_metric_age_s),
            Rejection::Failures => format!("{} or more recent failures", a.exclude_after_failures),
        }
    }
}

impl Admission {
    /// The first threshold `node` misses, if any.
    pub fn check(&self, node: &CandidateNode) -> Option<Rejection> {
        if node.load > self.max_load {
            Some(Rejection::Load)
        } else if node.disk_free_pct < self.min_disk_free_pct {
            Some(Rejection::Disk)
        } else if node.memory_free_mb < self.min_memory_free_mb {
            Some(Rejection::Memory)
        } else if node.metric_age_s > self.max_metric_age_s {
            Some(Rejection::MetricAge)
        } else if self.exclude_after_failures > 0 && node.recent_failures >= self.exclude_after_failures {
            Some(Rejection::Failures)
        } else {
            None
        }
    }
}

impl Policy {
    pub fn validate(&self) -> AppResult<()> {
        let a = &self.admission;
        let checks = [
            ("admission.max_load", a.max_load),
            ("admission.min_disk_free_pct", a.min_disk_free_pct),
            ("admission.min_memory_free_mb", a.min_memory_free_mb),
            ("admission.max_metric_age_s", a.max_metric_age_s),
            ("admission.max_path_age_s", a.max_path_age_s),
            ("weights.load", self.weights.load),
            ("weights.unreliability", self.weights.unreliability),
            ("weights.recent_failure", self.weights.recent_failure),
            ("weights.site_extra", self.weights.site_extra),
            ("weights.link", self.weights.link),
        ];
        for (field, value) in checks {
            if !(value.is_finite() && value >= 0.0) {
                return Err(AppError::invalid(field, format!("{field} must be a number ≥ 0, not {value}")));
            }
        }
        if a.max_load == 0.0 {
            return Err(AppError::invalid("admission.max_load", "admission.max_load must be above 0"));
        }
        Ok(())
    }

    /// The node terms of the objective for placing a sliver on `node`: load, unreliability, failures.
    pub fn node_terms(&self, node: &CandidateNode) -> [f64; 3] {
        let w = &self.weights;
        [
            w.load * node.load / self.admission.max_load,
            w.unreliability * (1.0 - node.reliability),
            w.recent_failure * f64::from(node.recent_failures),
        ]
    }
}
