//! What the mapper answers: status, objective and its terms, the MIP gap, the placement, and per virtual
//! link the requested versus matched values; for infeasible requests, which constraint class binds and the
//! nearest miss. One serde value, printed as JSON by `portolan map` and stored with the experiment later.

use model::topology::Target;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub status: Status,
    /// The objective of the placement (sum of `terms`), when there is one.
    pub objective: Option<f64>,
    pub terms: Option<Terms>,
    /// HiGHS's relative MIP gap (0 when proven optimal); absent when nothing was solved.
    pub mip_gap: Option<f64>,
    /// The best proven lower bound on the objective.
    pub bound: Option<f64>,
    pub placement: Vec<Placed>,
    pub links: Vec<LinkMatch>,
    /// Why there is no placement: one entry per binding constraint found.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub explanation: Vec<Explanation>,
    pub stats: Stats,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Proven optimal (within HiGHS's default relative gap of 1e-4).
    Optimal,
    /// A placement meeting every hard constraint, not proven optimal: the time limit stopped the search.
    Feasible,
    /// No placement meets the hard constraints; `explanation` says why.
    Infeasible,
    /// The time limit passed before any placement was found or infeasibility proven.
    Unknown,
}

/// The objective's terms; `total` is their sum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Terms {
    pub load: f64,
    pub unreliability: f64,
    pub recent_failures: f64,
    pub site_spread: f64,
    pub latency: f64,
    pub bandwidth: f64,
    pub loss: f64,
    pub total: f64,
}

impl Terms {
    pub fn sum(&mut self) {
        self.total = self.load
            + self.unreliability
            + self.recent_failures
            + self.site_spread
            + self.latency
            + self.bandwidth
            + self.loss;
    }
}

/// One virtual node's testbed node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Placed {
    pub vnode: String,
    pub node_id: u64,
    pub hostname: String,
    pub site: String,
}

/// A virtual link: what was asked and what the chosen node pair's measured path offers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinkMatch {
    pub a: String,
    pub b: String,
    pub requested: Requested,
    /// The measured path; absent when the pair is unmeasured (allowed only for links without targets).
    pub matched: Option<PathValues>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Requested {
    pub latency: Option<Target>,
    pub bandwidth: Option<Target>,
    pub loss: Option<Target>,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PathValues {
    pub latency_ms: f64,
    pub bandwidth_kbps: f64,
    pub loss: f64,
}

/// The class of constraint that makes a request infeasible.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConstraintClass {
    /// Not enough nodes pass the admission thresholds.
    Admission,
    /// Not enough nodes of a requested type.
    NodeType,
    /// The per-site cap leaves too few nodes.
    SiteCap,
    /// A fixed node is unknown, not admitted or of the wrong type.
    FixedNode,
    /// No measured node pair meets a link's tolerances.
    Link,
    /// Each class passes alone, but not all together.
    Combination,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    pub class: ConstraintClass,
    pub message: String,
}

/// Sizes and times, for operators and benchmarks; `elapsed_ms` is the only field that varies between runs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub admitted_nodes: usize,
    pub variables: usize,
    pub constraints: usize,
    /// Node pairs left for constrained links after pruning by tolerance and arc consistency.
    pub candidate_pairs: usize,
    /// Candidate nodes of linked virtual nodes removed because no placement can use them: putting the
    /// virtual node there leaves another without a node once the link tolerances are propagated.
    pub ruled_out: usize,
    /// Candidate nodes removed because every placement using them costs more than the warm start.
    pub too_costly: usize,
    /// Whether narrowing tested every candidate (false when its work budget or time ran out).
    pub narrowing_complete: bool,
    /// Whether the heuristic found a placement that warm-started the solver.
    pub warm_start: bool,
    pub elapsed_ms: u64,
}
