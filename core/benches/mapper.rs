//! Mapper benchmarks: the MILP against a greedy placement and a simulated-annealing placement (as Emulab's
//! `assign` does), on instances exported by the reference testbed's world (`reference_testbed::world`): the real
//! PlanetLab world (684 nodes, the 490 of them with the measured RTT matrix) and a generated 10,000-node
//! world. Prints one table row per instance. Run: `cargo bench -p server --bench mapper`.
//!
//! Node-centric: 50 v / 684 p, 200 v / 684 p, 1000 v / 10,000 p (target: proven optimal, < 1 s for the
//! largest). Link-centric: 5, 10, 20 virtual nodes with 1.5× as many links on the 490 measured nodes, with
//! latency targets planted from a hidden placement so a zero-violation answer exists (targets: every link in
//! tolerance in < 2 s at 20 v / 30 links; gap ≤ 5 % within 30 s), then 20 v / 30 links again with eleven other
//! sets of planted targets, for the gap target's robustness.

use model::topology::{
    ExperimentOptions, FailureAction, LinkWeights, NodeType, Target, Topology, VirtualLink, VirtualNode,
};
use portolan_core::mapper::{self, CandidateNode, MapWorld, Policy, Prepared, heuristic, prepare};
use reference_testbed::world::World;
use std::collections::HashMap;
use std::time::Instant;

/// The seed of the testbed worlds the instances come from.
const WORLD_SEED: u64 = 1;

/// The bench's own random choices (planted placements, annealing moves).
struct Rng(u64);

impl Rng {
    /// splitmix64: tiny, seeded, reproducible.
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        ((self.next() * n as f64) as usize).min(n - 1)
    }
}

// ---- Instances --------------------------------------------------------------------------------------------

fn vnode(name: String, node_type: NodeType) -> VirtualNode {
    VirtualNode {
        name,
        node_type,
        fixed: None,
        failure_action: FailureAction::Fatal,
        software: vec![],
        startup: None,
    }
}

/// `v` virtual nodes: 70 % any, 20 % Internet2, 10 % international (PlanetLab has only 4 DSL nodes).
fn node_centric(v: usize) -> Topology {
    let nodes = (0..v)
        .map(|i| {
            let t = match i % 50 {
                0..35 => NodeType::Any,
                35..45 => NodeType::Internet2,
                _ => NodeType::International,
            };
            vnode(format!("n{i}"), t)
        })
        .collect();
    Topology { nodes, links: vec![], options: ExperimentOptions::default() }
}

/// `v` virtual nodes and 1.5 v links (a ring plus chords), latency targets planted from a hidden placement
/// on admitted nodes over the world's exported paths that admission accepts (measured and fresh), so a
/// zero-violation answer exists; tolerance 3 % of the planted value (at least 1 ms).
fn link_centric(world: &MapWorld, policy: &Policy, v: usize, seed: u64) -> Topology {
    let mut rng = Rng(seed);
    let fresh: HashMap<(u64, u64), f64> = world
        .paths
        .iter()
        .filter(|p| policy.admission.path_fresh(p.age_s))
        .map(|p| ((p.a.min(p.b), p.a.max(p.b)), p.latency_ms))
        .collect();
    let latency =
        |a: &CandidateNode, b: &CandidateNode| fresh.get(&(a.id.min(b.id), a.id.max(b.id))).copied();
    let admitted: Vec<&CandidateNode> = world
        .nodes
        .iter()
        .filter(|n| policy.admission.check(n).is_none() && fresh.keys().any(|&(a, b)| a == n.id || b == n.id))
        .collect();
    let mut pairs: Vec<(usize, usize)> = (0..v).map(|i| (i, (i + 1) % v)).collect();
    while pairs.len() < v * 3 / 2 {
        let (a, b) = (rng.below(v), rng.below(v));
        if a != b && !pairs.iter().any(|&(x, y)| (x, y) == (a, b) || (x, y) == (b, a)) {
            pairs.push((a, b));
        }
    }
    // Draw the hidden placement until every link's path is fresh (2 % of the pairs are stale).
    let hidden = loop {
        let mut hidden: Vec<&CandidateNode> = Vec::new();
        while hidden.len() < v {
            let n = admitted[rng.below(admitted.len())];
            if hidden.iter().all(|h| h.id != n.id) {
                hidden.push(n);
            }
        }
        if pairs.iter().all(|&(a, b)| latency(hidden[a], hidden[b]).is_some()) {
            break hidden;
        }
    };
    let links = pairs
        .into_iter()
        .map(|(a, b)| {
            let value =
                latency(hidden[a], hidden[b]).expect("drawn so that every link is measured and fresh");
            VirtualLink {
                a: format!("n{a}"),
                b: format!("n{b}"),
                latency: Some(Target { value, tolerance: (value * 0.03).max(1.0) }),
                bandwidth: None,
                loss: None,
                weights: LinkWeights::default(),
            }
        })
        .collect();
    let nodes = (0..v).map(|i| vnode(format!("n{i}"), NodeType::Any)).collect();
    Topology { nodes, links, options: ExperimentOptions::default() }
}

// ---- Baselines --------------------------------------------------------------------------------------------

/// The cost simulated annealing minimises: the mapper's objective, plus 100 per link that is unmeasured or out
/// of tolerance (annealing, like wanlinksolve, cannot keep hard constraints hard).
fn penalised_cost(prep: &Prepared, placement: &[usize]) -> (f64, usize) {
    let mut cost: f64 = placement.iter().map(|&j| prep.node_cost[j]).sum();
    let mut per_site = vec![0u32; prep.site_count];
    placement.iter().for_each(|&j| per_site[prep.site_of[j]] += 1);
    cost +=
        prep.policy.weights.site_extra * f64::from(per_site.iter().map(|c| c.saturating_sub(1)).sum::<u32>());
    let mut violations = 0;
    for plan in &prep.links {
        let link = &prep.topo.links[plan.link];
        let (p, q) = (placement[prep.singles[plan.u].vnode], placement[prep.singles[plan.v].vnode]);
        match prep.path(p, q) {
            Some(path) if prepare::within(link, path) => {
                cost += prep.link_terms(link, path).iter().sum::<f64>()
            }
            _ => {
                violations += 1;
                cost += 100.0;
            }
        }
    }
    (cost, violations)
}

fn candidates_per_vnode(prep: &Prepared) -> Vec<Vec<usize>> {
    let mut cands = vec![Vec::new(); prep.topo.nodes.len()];
    prep.groups.iter().for_each(|g| g.members.iter().for_each(|&m| cands[m] = g.cands.clone()));
    prep.singles.iter().for_each(|s| cands[s.vnode] = s.cands.clone());
    cands
}

/// Simulated annealing over placements (move one virtual node to a free candidate, or swap two), from a
/// random start, geometric cooling; `steps` moves.
fn anneal(prep: &Prepared, steps: usize, seed: u64) -> (f64, usize) {
    let mut rng = Rng(seed);
    let cands = candidates_per_vnode(prep);
    let n = prep.topo.nodes.len();
    let mut used = vec![false; prep.world.nodes.len()];
    let mut placement = Vec::with_capacity(n);
    for c in &cands {
        let free: Vec<usize> = c.iter().copied().filter(|&j| !used[j]).collect();
        let j = free[rng.below(free.len())];
        used[j] = true;
        placement.push(j);
    }
    let (mut cost, mut viol) = penalised_cost(prep, &placement);
    let (mut best, mut best_viol) = (cost, viol);
    let mut temp: f64 = 10.0;
    let cooling = (0.001f64 / temp).powf(1.0 / steps as f64);
    for _ in 0..steps {
        let v = rng.below(n);
        let old = placement[v];
        let target = cands[v][rng.below(cands[v].len())];
        let swap_with = if used[target] { placement.iter().position(|&j| j == target) } else { None };
        if used[target] && swap_with.is_none_or(|w| !cands[w].contains(&old)) {
            continue;
        }
        placement[v] = target;
        if let Some(w) = swap_with {
            placement[w] = old;
        }
        let (next, next_viol) = penalised_cost(prep, &placement);
        if next <= cost || rng.next() < ((cost - next) / temp).exp() {
            if swap_with.is_none() {
                used[old] = false;
                used[target] = true;
            }
            (cost, viol) = (next, next_viol);
            if cost < best {
                (best, best_viol) = (cost, viol);
            }
        } else {
            placement[v] = old;
            if let Some(w) = swap_with {
                placement[w] = target;
            }
        }
        temp *= cooling;
    }
    (best, best_viol)
}

// ---- The table --------------------------------------------------------------------------------------------

fn row(name: &str, world: &MapWorld, topo: &Topology, time_limit: f64, sa_steps: usize) {
    // `MAPPER_BENCH_ONLY=link 20` runs only the instances whose name contains it.
    if std::env::var("MAPPER_BENCH_ONLY").is_ok_and(|only| !name.contains(&only)) {
        return;
    }
    let policy = Policy::default();
    let start = Instant::now();
    let answer = mapper::map(world, topo, &policy, time_limit).expect("valid instance");
    let milp_s = start.elapsed().as_secs_f64();
    // `MAPPER_BENCH_STATS=1` also prints the answer's bound and statistics to stderr.
    if std::env::var("MAPPER_BENCH_STATS").is_ok() {
        eprintln!("{name}: bound {:?}, {:?}", answer.bound, answer.stats);
    }
    let prep = Prepared::new(world, topo, &policy).expect("feasible instance");
    let start = Instant::now();
    let greedy = heuristic::greedy(&prep, heuristic::DEFAULT_BUDGET);
    let greedy_s = start.elapsed().as_secs_f64();
    let greedy_cost = greedy.map_or("none".to_owned(), |p| format!("{:.3}", penalised_cost(&prep, &p).0));
    let start = Instant::now();
    let (sa_cost, sa_viol) = anneal(&prep, sa_steps, 42);
    let sa_s = start.elapsed().as_secs_f64();
    let in_tol = answer
        .links
        .iter()
        .filter(|l| {
            l.matched.is_some_and(|m| {
                l.requested.latency.is_none_or(|t| t.admits(m.latency_ms))
                    && l.requested.bandwidth.is_none_or(|t| t.admits(m.bandwidth_kbps))
                    && l.requested.loss.is_none_or(|t| t.admits(m.loss))
            })
        })
        .count();
    println!(
        "| {name} | {:?} | {} | {} | {milp_s:.2} s | {} | {greedy_cost} | {greedy_s:.2} s | {sa_cost:.3} ({sa_viol} viol.) | {sa_s:.2} s |",
        answer.status,
        answer.objective.map_or("-".into(), |o| format!("{o:.3}")),
        answer.mip_gap.map_or("-".into(), |g| format!("{:.2} %", g * 100.0)),
        if topo.links.is_empty() { "–".to_owned() } else { format!("{in_tol}/{}", topo.links.len()) },
    );
}

fn main() {
    println!(
        "| instance | MILP status | MILP objective | gap | MILP time | links in tol. | greedy obj. | greedy time | SA obj. | SA time |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    // The real world with every measured path: its 684 nodes for node-centric requests, its 490 measured
    // nodes for link-centric ones (the 194 unmeasured nodes have no fitting partner and are pruned).
    let pl = World::planetlab(WORLD_SEED).to_map_world();
    row("node 50 v / 684 p", &pl, &node_centric(50), 30.0, 200_000);
    row("node 200 v / 684 p", &pl, &node_centric(200), 30.0, 200_000);
    let big = World::generate(10_000, WORLD_SEED).to_map_world();
    row("node 1000 v / 10000 p", &big, &node_centric(1000), 30.0, 200_000);
    let policy = Policy::default();
    for v in [5, 10, 20] {
        // `MAPPER_BENCH_SEED=n` plants other targets (the table uses 0).
        let shift: u64 = std::env::var("MAPPER_BENCH_SEED").map_or(0, |s| s.parse().expect("a number"));
        let topo = link_centric(&pl, &policy, v, v as u64 + 1000 * shift);
        row(&format!("link {v} v / {} l / 490 p, limit 1.5 s", topo.links.len()), &pl, &topo, 1.5, 200_000);
        row(&format!("link {v} v / {} l / 490 p, limit 30 s", topo.links.len()), &pl, &topo, 30.0, 200_000);
    }
    // The gap target on other planted targets: 20 v / 30 links, targets 1-11 (what MAPPER_BENCH_SEED=n
    // plants); set MAPPER_BENCH_TARGETS=k to run only the first k.
    let targets: u64 = std::env::var("MAPPER_BENCH_TARGETS").map_or(11, |s| s.parse().expect("a number"));
    for seed in 1..=targets {
        let topo = link_centric(&pl, &policy, 20, 20 + 1000 * seed);
        row(&format!("link 20 v / 30 l / 490 p, targets {seed}, limit 30 s"), &pl, &topo, 30.0, 200_000);
    }
}
