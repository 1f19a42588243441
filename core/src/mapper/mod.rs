//! The mapper: places a requested topology on testbed nodes by solving a MILP (good_lp → HiGHS).
//!
//! Emulab's portal used simulated annealing (`assign`) for node-centric requests and a genetic algorithm
//! (`wanlinksolve`, at most 256 nodes, killed after 120 s) for link-centric ones. A MILP with aggressive
//! pruning is both faster and better, and it says how good its answer is (the MIP gap) and, when there is
//! none, why (see `explain.rs`). The flow:
//!
//! 1. validate the world, the topology and the policy (bad input is an error naming the field);
//! 2. `prepare`: admission filter, candidates, grouping of identical virtual nodes, candidate pairs per
//!    constrained link pruned by tolerance and arc consistency; infeasibility found here is explained exactly;
//! 3. `narrow`: singleton arc consistency removes the candidates no placement can use (tight tolerances
//!    around cycles of the topology remove most of them);
//! 4. warm start: `heuristic`'s short depth-first search, else `anneal`; then `heuristic::improve`
//!    (large-neighbourhood search) takes it close to the optimum, and `narrow` runs again to remove the
//!    candidates every placement through which costs more;
//! 5. `milp`: build and solve with a time limit; read status, gap and bound from HiGHS;
//! 6. assemble the [`Answer`]: placement, objective terms, per-link requested versus matched values.
//!
//! The input is a plain [`MapWorld`], so this module needs no database: `portolan map` and the benchmarks
//! call [`map`] on files and generated worlds. Same input, same answer: every collection that shapes the
//! model is ordered, the heuristics and narrowing are seeded and bounded by counted work (not time), and
//! HiGHS runs with a fixed seed. Only an answer cut short by the time limit can differ with machine speed.

pub mod anneal;
pub mod answer;
mod explain;
pub mod heuristic;
mod milp;
mod narrow;
pub mod policy;
pub mod prepare;
pub use model::world;

#[cfg(test)]
mod tests;

pub use answer::{
    Answer, ConstraintClass, Explanation, LinkMatch, PathValues, Placed, Requested, Stats, Status, Terms,
};
pub use policy::{Admission, Policy, Weights};
pub use prepare::Prepared;
pub use world::{CandidateNode, MapWorld, MeasuredPath};

use model::{
    error::{AppError, AppResult},
    topology::Topology,
};
use std::time::Instant;

/// The default time limit of `portolan map`, in seconds.
pub const DEFAULT_TIME_LIMIT_S: f64 = 30.0;

/// [`map`] for async callers (server functions, reconcilers): it runs on the mapping pool's blocking threads,
/// since a mapping may take its whole time limit and would otherwise stall an async worker (and every
/// request scheduled on it). Mappings beyond the pool's size wait their turn.
pub async fn map_off_workers(
    world: std::sync::Arc<MapWorld>,
    topology: Topology,
    policy: Policy,
    time_limit_s: f64,
) -> AppResult<Answer> {
    crate::blocking::run(&crate::blocking::MAPPING, move || map(&world, &topology, &policy, time_limit_s))
        .await?
}

/// Maps `topology` onto `world` under `policy`, spending at most about `time_limit_s` seconds in the solver.
/// Bad input is an `Err`; an unplaceable request is an `Ok` answer with status `infeasible` and reasons.
pub fn map(world: &MapWorld, topology: &Topology, policy: &Policy, time_limit_s: f64) -> AppResult<Answer> {
    let start = Instant::now();
    if !(time_limit_s.is_finite() && time_limit_s > 0.0) {
        return Err(AppError::invalid(
            "time_limit",
            format!("the time limit must be above 0 s, not {time_limit_s}"),
        ));
    }
    world.validate()?;
    topology.validate()?;
    policy.validate()?;
    if topology.options.all_available_nodes {
        return Ok(all_available(world, topology, policy, start));
    }
    let mut prep = match Prepared::new(world, topology, policy) {
        Ok(prep) => prep,
        Err(explanation) => return Ok(infeasible(explanation, admitted(world, policy), start)),
    };
    let after = |seconds: f64| {
        std::time::Duration::try_from_secs_f64(seconds)
            .ok()
            .and_then(|limit| start.checked_add(limit))
            .unwrap_or_else(|| start + std::time::Duration::from_secs(365 * 24 * 3600))
    };
    // Narrowing and the warm start may take a quarter of the time, or up to 1 s of short limits, but never
    // more than 60 %: under short limits the warm start is often the only placement there is, and
    // narrowing makes the model much smaller, but HiGHS needs time to load and presolve the model.
    let before_model = after((time_limit_s / 4.0).max(1.0).min(time_limit_s * 0.6));
    let (warm, narrowed) = match warm_and_narrow(&mut prep, before_model) {
        Ok(done) => done,
        Err(explanation) => return Ok(infeasible(explanation, admitted(world, policy), start)),
    };
    let deadline = after(time_limit_s);
    let solved = milp::solve(&prep, warm.as_deref(), deadline)?;
    let stats = Stats {
        admitted_nodes: admitted(world, policy),
        variables: solved.variables,
        constraints: solved.constraints,
        candidate_pairs: prep.links.iter().map(|l| l.pairs.len()).sum(),
        ruled_out: narrowed.inconsistent,
        too_costly: narrowed.too_costly,
        narrowing_complete: narrowed.complete,
        warm_start: warm.is_some(),
        elapsed_ms: 0,
    };
    let answer = match (solved.status, solved.placement.or(warm)) {
        (Status::Infeasible, _) => {
            let why = Explanation {
                class: ConstraintClass::Combination,
                message: "each constraint class can be met alone (types, admission, site caps, every link), \
                          but not all together: relax a link's tolerance or the site cap"
                    .into(),
            };
            Answer { stats, ..infeasible(vec![why], 0, start) }
        }
        (status, Some(placement)) => {
            let terms = prep.evaluate(&placement).map_err(|e| AppError::internal(format!("mapper: {e}")))?;
            let status = if status == Status::Unknown { Status::Feasible } else { status };
            // Narrowing's own bound holds for the original problem too (see `narrow.rs`).
            let bound = narrowed.bound.map_or(solved.bound, |own| own.max(solved.bound));
            placed_answer(&prep, status, &placement, terms, bound, stats)
        }
        (_, None) => Answer { status: Status::Unknown, stats, ..infeasible(vec![], 0, start) },
    };
    Ok(finish(answer, start))
}

/// Narrows the candidates (see `narrow.rs`), finds and improves a warm start on what is left, then
/// narrows again with its cost: exact propagation first makes the heuristics' search space small.
fn warm_and_narrow(
    prep: &mut Prepared,
    deadline: Instant,
) -> Result<(Option<Vec<usize>>, narrow::Narrowed), Vec<Explanation>> {
    let cost = |prep: &Prepared, placement: &[usize]| prep.evaluate(placement).ok().map(|terms| terms.total);
    // A quick depth-first search first, bounded by its steps only (milliseconds): under short limits
    // narrowing can take all the time there is, and a placement found here does not depend on the clock.
    let quick = heuristic::greedy(prep, heuristic::WARM_BUDGET);
    let first =
        narrow::narrow(prep, quick.as_ref().and_then(|q| cost(prep, q)), narrow::DEFAULT_BUDGET, deadline)?;
    // Narrowing keeps every placement at most as costly as `quick`, so `quick` is still valid.
    let found: Vec<(f64, Vec<usize>)> = [warm_start(prep, deadline), quick]
        .into_iter()
        .flatten()
        .filter_map(|placement| Some((cost(prep, &placement)?, placement)))
        .collect();
    let Some((incumbent, warm)) = found.into_iter().min_by(|a, b| a.0.total_cmp(&b.0)) else {
        return Ok((None, first));
    };
    let second = narrow::narrow(prep, Some(incumbent), narrow::DEFAULT_BUDGET, deadline)?;
    let narrowed = narrow::Narrowed {
        inconsistent: first.inconsistent + second.inconsistent,
        too_costly: first.too_costly + second.too_costly,
        complete: first.complete && second.complete,
        bound: second.bound,
    };
    Ok((Some(warm), narrowed))
}

/// A short depth-first search, else annealing; then large-neighbourhood improvement.
fn warm_start(prep: &Prepared, deadline: Instant) -> Option<Vec<usize>> {
    let first = heuristic::greedy_until(prep, heuristic::WARM_BUDGET, deadline).or_else(|| {
        (!prep.links.is_empty()).then(|| anneal::anneal(prep, anneal::DEFAULT_MOVES, deadline)).flatten()
    })?;
    Some(heuristic::improve(prep, &first, heuristic::IMPROVE_BUDGET, deadline))
}

fn elapsed_ms(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn finish(mut answer: Answer, start: Instant) -> Answer {
    answer.stats.elapsed_ms = elapsed_ms(start);
    answer
}

fn admitted(world: &MapWorld, policy: &Policy) -> usize {
    world.nodes.iter().filter(|n| policy.admission.check(n).is_none()).count()
}

fn infeasible(explanation: Vec<Explanation>, admitted_nodes: usize, start: Instant) -> Answer {
    let answer = Answer {
        status: Status::Infeasible,
        objective: None,
        terms: None,
        mip_gap: None,
        bound: None,
        placement: Vec::new(),
        links: Vec::new(),
        explanation,
        stats: Stats { admitted_nodes, ..Stats::default() },
    };
    finish(answer, start)
}

fn placed_answer(
    prep: &Prepared,
    status: Status,
    placement: &[usize],
    terms: Terms,
    bound: f64,
    stats: Stats,
) -> Answer {
    let placed = prep
        .topo
        .nodes
        .iter()
        .zip(placement)
        .map(|(vnode, &j)| place(&vnode.name, &prep.world.nodes[j]))
        .collect();
    let index = prep.vnode_index();
    let links = prep
        .topo
        .links
        .iter()
        .map(|link| {
            let (p, q) = (placement[index[link.a.as_str()]], placement[index[link.b.as_str()]]);
            LinkMatch {
                a: link.a.clone(),
                b: link.b.clone(),
                requested: Requested { latency: link.latency, bandwidth: link.bandwidth, loss: link.loss },
                matched: prep.path(p, q).map(|path| PathValues {
                    latency_ms: path.latency_ms,
                    bandwidth_kbps: path.bandwidth_kbps,
                    loss: path.loss,
                }),
            }
        })
        .collect();
    // As HiGHS defines it: the distance from the placement's objective down to the bound, relative to the
    // objective.
    let gap = if status == Status::Optimal || terms.total <= 0.0 {
        0.0
    } else {
        ((terms.total - bound) / terms.total).max(0.0)
    };
    Answer {
        status,
        objective: Some(terms.total),
        terms: Some(terms),
        mip_gap: Some(gap),
        bound: Some(bound),
        placement: placed,
        links,
        explanation: Vec::new(),
        stats,
    }
}

fn place(vnode: &str, node: &CandidateNode) -> Placed {
    Placed {
        vnode: vnode.to_owned(),
        node_id: node.id,
        hostname: node.hostname.clone(),
        site: node.site.clone(),
    }
}

/// `all_available_nodes`: the one template node goes on every admitted node of its type (the cheapest ones
/// per site when a site cap applies). The problem is separable, so this is exact without a solver.
fn all_available(world: &MapWorld, topology: &Topology, policy: &Policy, start: Instant) -> Answer {
    let template = &topology.nodes[0];
    let mut by_site: std::collections::BTreeMap<&str, Vec<(f64, usize)>> = Default::default();
    for (j, node) in world.nodes.iter().enumerate() {
        if policy.admission.check(node).is_none() && template.node_type.admits(node.link_class, &node.site) {
            let cost: f64 = policy.node_terms(node).iter().sum();
            by_site.entry(node.site.as_str()).or_default().push((cost, j));
        }
    }
    let cap = topology.options.site_cap().map_or(usize::MAX, |c| c as usize);
    let mut chosen: Vec<usize> = Vec::new();
    for nodes in by_site.values_mut() {
        nodes.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        chosen.extend(nodes.iter().take(cap).map(|&(_, j)| j));
    }
    chosen.sort_unstable();
    if chosen.is_empty() {
        let why = Explanation {
            class: ConstraintClass::Admission,
            message: format!("no node of type {} passes admission", template.node_type.label()),
        };
        return infeasible(vec![why], admitted(world, policy), start);
    }
    let mut terms = Terms::default();
    for &j in &chosen {
        let [load, unrel, fail] = policy.node_terms(&world.nodes[j]);
        terms.load += load;
        terms.unreliability += unrel;
        terms.recent_failures += fail;
    }
    let extra: usize = by_site.values().map(|n| n.len().min(cap).saturating_sub(1)).sum();
    terms.site_spread = policy.weights.site_extra * extra as f64;
    terms.sum();
    let placement = chosen
        .iter()
        .enumerate()
        .map(|(k, &j)| place(&format!("{}-{}", template.name, k + 1), &world.nodes[j]))
        .collect();
    let answer = Answer {
        status: Status::Optimal,
        objective: Some(terms.total),
        terms: Some(terms),
        mip_gap: Some(0.0),
        bound: Some(terms.total),
        placement,
        links: Vec::new(),
        explanation: Vec::new(),
        stats: Stats { admitted_nodes: admitted(world, policy), ..Stats::default() },
    };
    finish(answer, start)
}
