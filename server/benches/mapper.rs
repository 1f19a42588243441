//! Mapper benchmarks: the MILP against a greedy placement and a simulated-annealing placement (as Emulab's
//! `assign` does), on instances from the real PlanetLab node list and RTT matrix and on a generated
//! 10,000-node world. Prints one table row per instance. Run: `cargo bench -p server --bench mapper`.
//!
//! Node-centric: 50 v / 684 p, 200 v / 684 p, 1000 v / 10,000 p (target: proven optimal, < 1 s for the
//! largest). Link-centric: 5, 10, 20 virtual nodes with 1.5× as many links on the 490 measured nodes, with
//! latency targets planted from a hidden placement so a zero-violation answer exists (targets: every link in
//! tolerance in < 2 s at 20 v / 30 links; gap ≤ 5 % within 30 s).

use app::topology::{
    ExperimentOptions, FailureAction, LinkClass, LinkWeights, NodeType, Target, Topology, VirtualLink,
    VirtualNode,
};
use server::mapper::{self, CandidateNode, MapWorld, MeasuredPath, Policy, Prepared, heuristic, prepare};
use std::time::Instant;

// ---- Instance loader --------------------------------------------------------------------------------------
// A small loader of its own, built from the shipped files directly: `World::to_map_world` of the reference
// testbed did not exist yet when this bench was written. Node attributes the data lacks (link class, load,
// disk, memory, reliability, bandwidth) are drawn from a fixed-seed generator; the matrix index i is joined to
// the i-th node of nodes.csv (synthetic, as the data's provenance notes say).

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

fn data(path: &str) -> String {
    let full = format!("{}/data/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("cannot read {full}: {e}"))
}

fn class_of(hostname: &str) -> LinkClass {
    let tld = hostname.rsplit('.').next().unwrap_or("");
    if hostname.contains("dsl") {
        LinkClass::Dsl
    } else if tld == "edu" {
        LinkClass::Internet2
    } else if ["com", "net", "org", "gov"].contains(&tld) {
        LinkClass::Commodity
    } else {
        LinkClass::International
    }
}

fn node(rng: &mut Rng, id: u64, hostname: String, site: String, class: LinkClass) -> CandidateNode {
    CandidateNode {
        id,
        hostname,
        site,
        link_class: class,
        load: rng.next() * 4.5,
        memory_free_mb: 256.0 + rng.next() * 3_840.0,
        disk_free_pct: 5.0 + rng.next() * 90.0,
        reliability: 0.7 + rng.next() * 0.3,
        recent_failures: u32::from(rng.next() < 0.05),
        metric_age_s: rng.next() * 600.0,
    }
}

/// The 684 PlanetLab nodes; with `paths`, only the first 490 with the measured RTT matrix between them.
fn planetlab(paths: bool) -> MapWorld {
    let mut rng = Rng(2010);
    let csv = data("planetlab-nodes-2010-sfa/nodes.csv");
    let mut nodes: Vec<CandidateNode> = csv
        .lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.splitn(4, ',').collect();
            let class = class_of(f[1]);
            node(&mut rng, f[0].parse().expect("numeric node_id"), f[1].into(), f[2].into(), class)
        })
        .collect();
    if !paths {
        return MapWorld { nodes, paths: vec![] };
    }
    nodes.truncate(490);
    let matrix: Vec<Vec<f64>> = data("planetlab-rtt-490/PlanetLabData_1")
        .lines()
        .map(|l| l.split_whitespace().map(|x| x.parse().expect("RTT in ms")).collect())
        .collect();
    let mut measured = Vec::new();
    for a in 0..490 {
        for b in a + 1..490 {
            measured.push(MeasuredPath {
                a: nodes[a].id,
                b: nodes[b].id,
                latency_ms: matrix[a][b],
                bandwidth_kbps: 1_000.0 + rng.next() * 99_000.0,
                loss: 0.0,
                age_s: rng.next() * 1_800.0,
            });
        }
    }
    MapWorld { nodes, paths: measured }
}

/// A generated world of `n` nodes at sites of 1–4 nodes, without paths (for node-centric instances).
fn generated(n: usize) -> MapWorld {
    let mut rng = Rng(10_000);
    let mut nodes = Vec::with_capacity(n);
    let mut site = 0;
    while nodes.len() < n {
        for _ in 0..(1 + rng.below(4)).min(n - nodes.len()) {
            let r = rng.next();
            let class = match r {
                r if r < 0.40 => LinkClass::Internet2,
                r if r < 0.75 => LinkClass::Commodity,
                r if r < 0.95 => LinkClass::International,
                _ => LinkClass::Dsl,
            };
            let i = nodes.len();
            nodes.push(node(
                &mut rng,
                i as u64 + 1,
                format!("node{i}.site{site}.example"),
                format!("site{site}"),
                class,
            ));
        }
        site += 1;
    }
    MapWorld { nodes, paths: vec![] }
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
/// on admitted nodes; tolerance 3 % of the planted value (at least 1 ms).
fn link_centric(world: &MapWorld, policy: &Policy, v: usize, seed: u64) -> Topology {
    let mut rng = Rng(seed);
    let admitted: Vec<&CandidateNode> =
        world.nodes.iter().filter(|n| policy.admission.check(n).is_none()).collect();
    let mut hidden: Vec<&CandidateNode> = Vec::new();
    while hidden.len() < v {
        let n = admitted[rng.below(admitted.len())];
        if hidden.iter().all(|h| h.id != n.id) {
            hidden.push(n);
        }
    }
    let latency = |a: u64, b: u64| {
        let (a, b) = (a.min(b), a.max(b));
        world.paths.iter().find(|p| p.a.min(p.b) == a && p.a.max(p.b) == b).map(|p| p.latency_ms)
    };
    let mut pairs: Vec<(usize, usize)> = (0..v).map(|i| (i, (i + 1) % v)).collect();
    while pairs.len() < v * 3 / 2 {
        let (a, b) = (rng.below(v), rng.below(v));
        if a != b && !pairs.iter().any(|&(x, y)| (x, y) == (a, b) || (x, y) == (b, a)) {
            pairs.push((a, b));
        }
    }
    let links = pairs
        .into_iter()
        .map(|(a, b)| {
            let value = latency(hidden[a].id, hidden[b].id).expect("the 490 nodes are fully measured");
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
    let policy = Policy::default();
    let start = Instant::now();
    let answer = mapper::map(world, topo, &policy, time_limit).expect("valid instance");
    let milp_s = start.elapsed().as_secs_f64();
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
        "| {name} | {:?} | {} | {} | {milp_s:.2} s | {in_tol}/{} | {greedy_cost} | {greedy_s:.2} s | {sa_cost:.3} ({sa_viol} viol.) | {sa_s:.2} s |",
        answer.status,
        answer.objective.map_or("-".into(), |o| format!("{o:.3}")),
        answer.mip_gap.map_or("-".into(), |g| format!("{:.2} %", g * 100.0)),
        topo.links.len(),
    );
}

fn main() {
    println!(
        "| instance | MILP status | MILP objective | gap | MILP time | links in tol. | greedy obj. | greedy time | SA obj. | SA time |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let pl = planetlab(false);
    row("node 50 v / 684 p", &pl, &node_centric(50), 30.0, 200_000);
    row("node 200 v / 684 p", &pl, &node_centric(200), 30.0, 200_000);
    let big = generated(10_000);
    row("node 1000 v / 10000 p", &big, &node_centric(1000), 30.0, 200_000);
    let measured = planetlab(true);
    let policy = Policy::default();
    for v in [5, 10, 20] {
        let topo = link_centric(&measured, &policy, v, v as u64);
        row(&format!("link {v} v / {} l / 490 p, 1.5 s", topo.links.len()), &measured, &topo, 1.5, 200_000);
        row(&format!("link {v} v / {} l / 490 p, 30 s", topo.links.len()), &measured, &topo, 30.0, 200_000);
    }
}
