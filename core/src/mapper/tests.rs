//! Hand-checked instances for every constraint class, the explanations of infeasible ones, determinism,
//! the time limit, and a property test (against an independent checker and brute force) that every
//! returned placement meets every hard constraint and that "optimal" and "infeasible" are true.

use super::*;
use model::topology::{
    ExperimentOptions, FailureAction, LinkClass, LinkWeights, NodeType, Target, VirtualLink, VirtualNode,
};
use proptest::prelude::*;

fn cand(id: u64, host: &str, site: &str, class: LinkClass, load: f64) -> CandidateNode {
    CandidateNode {
        id,
        hostname: host.into(),
        site: site.into(),
        link_class: class,
        load: Some(load),
        memory_free_mb: Some(1024.0),
        disk_free_pct: Some(50.0),
        reliability: 1.0,
        recent_failures: 0,
        metric_age_s: Some(60.0),
    }
}

fn path(a: u64, b: u64, latency_ms: f64) -> MeasuredPath {
    MeasuredPath { a, b, latency_ms, bandwidth_kbps: 10_000.0, loss: 0.0, age_s: 60.0 }
}

/// Six nodes at five sites; c2 is overloaded, d1's metrics are stale, e1 has no measured paths.
fn world() -> MapWorld {
    let mut d1 = cand(6, "d1.x", "delta", LinkClass::International, 0.3);
    d1.metric_age_s = Some(2_000.0);
    MapWorld {
        nodes: vec![
            cand(1, "a1.x", "alpha", LinkClass::Internet2, 0.5),
            cand(2, "a2.x", "alpha", LinkClass::Commodity, 1.0),
            cand(3, "b1.x", "beta", LinkClass::Internet2, 0.2),
            cand(4, "c1.x", "gamma", LinkClass::Dsl, 0.1),
            cand(5, "c2.x", "gamma", LinkClass::Dsl, 5.0),
            d1,
            cand(7, "e1.x", "epsilon", LinkClass::Commodity, 0.4),
        ],
        paths: vec![
            path(1, 2, 1.0),
            path(1, 3, 20.0),
            path(1, 4, 60.0),
            path(2, 3, 25.0),
            path(2, 4, 55.0),
            path(3, 4, 61.0),
        ],
    }
}

fn vnode(name: &str, node_type: NodeType) -> VirtualNode {
    VirtualNode {
        name: name.into(),
        node_type,
        fixed: None,
        failure_action: FailureAction::Fatal,
        software: vec![],
        startup: None,
    }
}

fn latency_link(a: &str, b: &str, value: f64, tolerance: f64) -> VirtualLink {
    VirtualLink {
        a: a.into(),
        b: b.into(),
        latency: Some(Target { value, tolerance }),
        bandwidth: None,
        loss: None,
        weights: LinkWeights::default(),
    }
}

fn topo(nodes: Vec<VirtualNode>, links: Vec<VirtualLink>) -> Topology {
    Topology { nodes, links, options: ExperimentOptions::default() }
}

fn run(t: &Topology) -> Answer {
    map(&world(), t, &Policy::default(), 10.0).expect("valid input")
}

fn hosts(answer: &Answer) -> Vec<&str> {
    answer.placement.iter().map(|p| p.hostname.as_str()).collect()
}

fn only_explanation(answer: &Answer) -> &Explanation {
    assert_eq!(answer.status, Status::Infeasible, "{answer:#?}");
    assert_eq!(answer.explanation.len(), 1, "{:#?}", answer.explanation);
    &answer.explanation[0]
}

#[tokio::test(flavor = "current_thread")]
async fn mapping_off_the_workers_gives_the_same_answer() {
    let t = topo(vec![vnode("x", NodeType::Any), vnode("y", NodeType::Internet2)], vec![]);
    let answer =
        map_off_workers(std::sync::Arc::new(world()), t.clone(), Policy::default(), 10.0).await.unwrap();
    assert_eq!(answer.placement, run(&t).placement);
    assert_eq!(answer.status, Status::Optimal);
}

#[test]
fn picks_the_cheapest_admitted_node() {
    let answer = run(&topo(vec![vnode("x", NodeType::Any)], vec![]));
    assert_eq!(answer.status, Status::Optimal);
    assert_eq!(hosts(&answer), ["c1.x"]);
    let terms = answer.terms.unwrap();
    assert!((terms.load - 0.1 / 4.0).abs() < 1e-9, "{terms:?}");
    assert_eq!(answer.objective, Some(terms.total));
    assert_eq!(answer.mip_gap, Some(0.0));
}

#[test]
fn honours_node_types() {
    let answer = run(&topo(vec![vnode("x", NodeType::Dsl), vnode("y", NodeType::Commodity)], vec![]));
    assert_eq!(hosts(&answer), ["c1.x", "e1.x"]);
    let answer = run(&topo(vec![vnode("x", NodeType::Site("alpha".into()))], vec![]));
    assert_eq!(hosts(&answer), ["a1.x"]);
}

#[test]
fn explains_too_few_admitted_nodes_of_a_type() {
    let answer = run(&topo(vec![vnode("x", NodeType::Dsl), vnode("y", NodeType::Dsl)], vec![]));
    let why = only_explanation(&answer);
    assert_eq!(why.class, ConstraintClass::Admission);
    assert_eq!(
        why.message,
        "2 DSL nodes requested, 1 pass admission (2 DSL nodes known; rejected: 1 with load above 4)"
    );
}

#[test]
fn explains_too_few_nodes_of_a_type_in_the_world() {
    let nodes = (0..3).map(|i| vnode(&format!("n{i}"), NodeType::Internet2)).collect();
    let why = only_explanation(&run(&topo(nodes, vec![]))).clone();
    assert_eq!(why.class, ConstraintClass::NodeType);
    assert_eq!(why.message, "3 Internet2 nodes requested, 2 pass admission (2 Internet2 nodes known)");
}

#[test]
fn explains_a_shortage_only_visible_across_types() {
    let nodes = vec![vnode("a", NodeType::Dsl), vnode("b", NodeType::Any), vnode("c", NodeType::Any)]
        .into_iter()
        .chain((0..3).map(|i| vnode(&format!("n{i}"), NodeType::Any)))
        .collect();
    let why = only_explanation(&run(&topo(nodes, vec![]))).clone();
    assert_eq!(why.class, ConstraintClass::Admission);
    assert!(why.message.starts_with("6 nodes requested, 5 pass admission"), "{}", why.message);
    assert!(why.message.ends_with("(counting every requested type together)"), "{}", why.message);
}

#[test]
fn honours_fixed_nodes_or_says_why_not() {
    let mut x = vnode("x", NodeType::Any);
    x.fixed = Some("a2.x".into());
    assert_eq!(hosts(&run(&topo(vec![x.clone(), vnode("y", NodeType::Any)], vec![]))), ["a2.x", "c1.x"]);
    x.fixed = Some("7".into());
    assert_eq!(hosts(&run(&topo(vec![x.clone()], vec![]))), ["e1.x"]);
    let cases = [
        ("nowhere.x", NodeType::Any, "node x is fixed to nowhere.x, which is not a known testbed node"),
        ("c2.x", NodeType::Any, "node x is fixed to c2.x, which fails admission: load above 4"),
        ("d1.x", NodeType::Any, "node x is fixed to d1.x, which fails admission: metrics older than 900 s"),
        (
            "a2.x",
            NodeType::Dsl,
            "node x is fixed to a2.x, which is not of the requested type DSL (it is Commodity at site alpha)",
        ),
    ];
    for (host, node_type, message) in cases {
        let mut x = vnode("x", node_type);
        x.fixed = Some(host.into());
        let why = only_explanation(&run(&topo(vec![x], vec![]))).clone();
        assert_eq!((why.class, why.message.as_str()), (ConstraintClass::FixedNode, message));
    }
}

#[test]
fn spreads_across_sites_and_honours_the_cap() {
    // Without a penalty, the two cheapest nodes would be c1 and b1 anyway; force a1/a2 to be cheapest.
    let mut w = world();
    w.nodes[0].load = Some(0.0);
    w.nodes[1].load = Some(0.0);
    let two = topo(vec![vnode("x", NodeType::Any), vnode("y", NodeType::Any)], vec![]);
    let mut policy = Policy::default();
    policy.weights.site_extra = 0.0;
    assert_eq!(hosts(&map(&w, &two, &policy, 10.0).unwrap()), ["a1.x", "a2.x"]);
    policy.weights.site_extra = 10.0;
    let spread = map(&w, &two, &policy, 10.0).unwrap();
    assert_ne!(spread.placement[0].site, spread.placement[1].site);
    policy.weights.site_extra = 0.0;
    let mut capped = two.clone();
    capped.options.one_node_per_site = true;
    let answer = map(&w, &capped, &policy, 10.0).unwrap();
    assert_ne!(answer.placement[0].site, answer.placement[1].site);
    assert_eq!(answer.terms.unwrap().site_spread, 0.0);
}

#[test]
fn the_spread_penalty_is_no_cap() {
    // Three nodes at one site: the penalty makes the placement cost more, but must not forbid it.
    let w = MapWorld {
        nodes: (1..=3).map(|i| cand(i, &format!("h{i}.x"), "alpha", LinkClass::Commodity, 0.5)).collect(),
        paths: vec![],
    };
    let t = topo((0..3).map(|i| vnode(&format!("n{i}"), NodeType::Any)).collect(), vec![]);
    let answer = map(&w, &t, &Policy::default(), 10.0).unwrap();
    assert_eq!(answer.status, Status::Optimal, "{:?}", answer.explanation);
    assert_eq!(answer.terms.unwrap().site_spread, 2.0 * Policy::default().weights.site_extra);
}

#[test]
fn explains_a_binding_site_cap() {
    let mut t = topo((0..5).map(|i| vnode(&format!("n{i}"), NodeType::Any)).collect(), vec![]);
    t.options.one_node_per_site = true;
    let why = only_explanation(&run(&t)).clone();
    assert_eq!(why.class, ConstraintClass::SiteCap);
    assert_eq!(
        why.message,
        "5 any nodes requested with at most 1 per site: the 5 admitted ones allow only 4"
    );
}

#[test]
fn maps_links_to_paths_within_tolerance() {
    let t = topo(
        vec![vnode("x", NodeType::Any), vnode("y", NodeType::Any)],
        vec![latency_link("x", "y", 20.0, 2.0)],
    );
    let answer = run(&t);
    assert_eq!(answer.status, Status::Optimal);
    let mut got = hosts(&answer);
    got.sort_unstable();
    assert_eq!(got, ["a1.x", "b1.x"]);
    let link = &answer.links[0];
    assert_eq!(link.requested.latency, Some(Target { value: 20.0, tolerance: 2.0 }));
    assert_eq!(link.matched.unwrap().latency_ms, 20.0);
    assert_eq!(answer.terms.unwrap().latency, 0.0);
}

#[test]
fn prefers_the_closest_path_among_those_in_tolerance() {
    let t = topo(
        vec![vnode("x", NodeType::Any), vnode("y", NodeType::Any)],
        vec![latency_link("x", "y", 22.0, 5.0)],
    );
    let answer = run(&t);
    // 20 ms (a1–b1) and 25 ms (a2–b1) both fit; 20 ms misses by 2/22, 25 ms by 3/22 and a2 is loaded more.
    assert_eq!(answer.links[0].matched.unwrap().latency_ms, 20.0);
    assert!((answer.terms.unwrap().latency - 2.0 / 22.0).abs() < 1e-9);
}

#[test]
fn explains_a_link_with_no_pair_in_tolerance_by_its_nearest_miss() {
    let t = topo(
        vec![vnode("x", NodeType::Any), vnode("y", NodeType::Dsl)],
        vec![latency_link("x", "y", 50.0, 3.0)],
    );
    let why = only_explanation(&run(&t)).clone();
    assert_eq!(why.class, ConstraintClass::Link);
    assert_eq!(
        why.message,
        "no node pair for link x–y within latency 50 ± 3 ms: closest is 55 ms between a2.x and c1.x"
    );
}

#[test]
fn never_assumes_an_unmeasured_path_is_good() {
    let mut x = vnode("x", NodeType::Any);
    x.fixed = Some("e1.x".into());
    let t = topo(vec![x, vnode("y", NodeType::Any)], vec![latency_link("x", "y", 10.0, 1_000.0)]);
    let why = only_explanation(&run(&t)).clone();
    assert_eq!(why.class, ConstraintClass::Link);
    assert!(why.message.contains("no measured path"), "{}", why.message);
    // A link without targets asks for nothing, so it may use an unmeasured pair.
    let mut t = t;
    t.links[0].latency = None;
    let answer = run(&t);
    assert_eq!(answer.status, Status::Optimal);
    assert_eq!(answer.links[0].matched, None);
}

#[test]
fn stale_paths_count_as_unmeasured() {
    let mut w = world();
    w.paths.iter_mut().for_each(|p| p.age_s = 7_200.0);
    let t = topo(
        vec![vnode("x", NodeType::Any), vnode("y", NodeType::Any)],
        vec![latency_link("x", "y", 20.0, 2.0)],
    );
    let answer = map(&w, &t, &Policy::default(), 10.0).unwrap();
    assert_eq!(only_explanation(&answer).class, ConstraintClass::Link);
}

#[test]
fn explains_links_that_fit_alone_but_not_together() {
    // Only a1–a2 is 1 ms, so a 1 ms triangle has no three distinct nodes.
    let names = ["x", "y", "z"];
    let links = vec![
        latency_link("x", "y", 1.0, 0.5),
        latency_link("y", "z", 1.0, 0.5),
        latency_link("x", "z", 1.0, 0.5),
    ];
    let t = topo(names.iter().map(|n| vnode(n, NodeType::Any)).collect(), links);
    assert_eq!(only_explanation(&run(&t)).class, ConstraintClass::Combination);
}

#[test]
fn explains_a_link_that_arc_consistency_empties() {
    // x–y fits only a1–a2 (1 ms) and y–z only pairs with 61 ms (b1–c1): y cannot be on both sides.
    let names = ["x", "y", "z"];
    let links = vec![latency_link("x", "y", 1.0, 0.5), latency_link("y", "z", 61.0, 0.5)];
    let t = topo(names.iter().map(|n| vnode(n, NodeType::Any)).collect(), links);
    let why = only_explanation(&run(&t)).clone();
    assert_eq!(why.class, ConstraintClass::Link);
    assert!(why.message.contains("also lets"), "{}", why.message);
}

/// Four nodes at four sites: a1, b1, c1 close a 10/10/20 ms triangle; d1 is 10 ms from a1 only.
fn triangle_world() -> MapWorld {
    MapWorld {
        nodes: vec![
            cand(1, "a1.x", "alpha", LinkClass::Internet2, 0.5),
            cand(2, "b1.x", "beta", LinkClass::Internet2, 0.5),
            cand(3, "c1.x", "gamma", LinkClass::Internet2, 0.5),
            cand(4, "d1.x", "delta", LinkClass::Internet2, 0.1),
        ],
        paths: vec![path(1, 2, 10.0), path(2, 3, 10.0), path(1, 3, 20.0), path(1, 4, 10.0)],
    }
}

fn triangle() -> Topology {
    let links = vec![
        latency_link("x", "y", 10.0, 1.0),
        latency_link("y", "z", 10.0, 1.0),
        latency_link("x", "z", 20.0, 1.0),
    ];
    topo(["x", "y", "z"].iter().map(|n| vnode(n, NodeType::Any)).collect(), links)
}

#[test]
fn narrowing_rules_out_nodes_that_fit_each_link_but_not_the_cycle() {
    // Arc consistency keeps d1 for y (d1–a1 is 10 ms, and a1 has partners on every link), but y on d1
    // leaves x and z both needing a1: singleton arc consistency removes it, and the cheap d1 is not used.
    let (world, t) = (triangle_world(), triangle());
    let policy = Policy::default();
    let mut prep = Prepared::new(&world, &t, &policy).unwrap();
    let far = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let y = prep.singles.iter().position(|s| s.vnode == 1).unwrap();
    assert!(prep.singles[y].cands.contains(&3), "arc consistency alone keeps d1 for y");
    let narrowed = narrow::narrow(&mut prep, None, narrow::DEFAULT_BUDGET, far).unwrap();
    assert!(narrowed.complete);
    assert!(!prep.singles[y].cands.contains(&3), "{:?}", prep.singles[y].cands);
    assert!(narrowed.inconsistent > 0);
    assert!(prep.links.iter().all(|l| l.pairs.iter().all(|p| p.p != 3 && p.q != 3)));
    let answer = map(&world, &t, &policy, 10.0).unwrap();
    assert_eq!(answer.status, Status::Optimal);
    assert_eq!(hosts(&answer), ["a1.x", "b1.x", "c1.x"]);
    assert!(answer.stats.ruled_out > 0 && answer.stats.narrowing_complete, "{:?}", answer.stats);
}

#[test]
fn narrowing_explains_a_cycle_no_node_can_close() {
    // Every link fits alone and arc consistency keeps a candidate for each end, but no triangle closes.
    let mut world = triangle_world();
    world.paths.retain(|p| (p.a, p.b) != (1, 3));
    world.paths.push(path(1, 3, 30.0));
    world.paths.push(path(3, 4, 20.0));
    let answer = map(&world, &triangle(), &Policy::default(), 10.0).unwrap();
    let why = only_explanation(&answer);
    assert_eq!(why.class, ConstraintClass::Combination);
    assert!(why.message.contains("fits all the links around it"), "{}", why.message);
}

#[test]
fn narrowing_drops_candidates_costlier_than_the_warm_start_and_keeps_the_optimum() {
    let world = random_world(20, 11);
    let t = planted(&world, 5, 6, 25.0);
    let policy = Policy::default();
    let answer = map(&world, &t, &policy, 30.0).unwrap();
    assert_eq!(answer.status, Status::Optimal);
    assert!(answer.stats.too_costly > 0, "{:?}", answer.stats);
    let best = brute_force(&world, &t, &policy).unwrap();
    assert!((answer.objective.unwrap() - best).abs() < 1e-6, "{:?} vs {best}", answer.objective);
    assert!(answer.bound.unwrap() <= best + 1e-6);
}

#[test]
fn narrowing_stops_at_its_work_budget_and_says_so() {
    let world = random_world(40, 11);
    let t = planted(&world, 5, 6, 25.0);
    let policy = Policy::default();
    let mut prep = Prepared::new(&world, &t, &policy).unwrap();
    let before: Vec<usize> = prep.singles.iter().map(|s| s.cands.len()).collect();
    let far = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let narrowed = narrow::narrow(&mut prep, None, 0, far).unwrap();
    assert!(!narrowed.complete);
    assert_eq!(narrowed.inconsistent + narrowed.too_costly, 0);
    assert_eq!(prep.singles.iter().map(|s| s.cands.len()).collect::<Vec<_>>(), before);
}

#[test]
fn annealing_finds_a_placement_with_every_link_in_tolerance() {
    let world = random_world(60, 3);
    let t = planted(&world, 8, 12, 20.0);
    let policy = Policy::default();
    let prep = Prepared::new(&world, &t, &policy).unwrap();
    let far = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let placement = anneal::anneal(&prep, anneal::DEFAULT_MOVES, far).expect("a planted placement exists");
    prep.evaluate(&placement).expect("every hard constraint holds");
    assert_eq!(anneal::anneal(&prep, anneal::DEFAULT_MOVES, far), Some(placement), "seeded");
}

#[test]
fn improvement_never_worsens_and_is_exact_on_small_topologies() {
    // Five linked virtual nodes: the first neighbourhood frees all of them, so the search is exhaustive.
    let world = random_world(18, 5);
    let t = planted(&world, 5, 6, 40.0);
    let policy = Policy::default();
    let prep = Prepared::new(&world, &t, &policy).unwrap();
    let start = heuristic::greedy(&prep, heuristic::DEFAULT_BUDGET).unwrap();
    let far = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let improved = heuristic::improve(&prep, &start, heuristic::IMPROVE_BUDGET, far);
    let (before, after) = (prep.evaluate(&start).unwrap().total, prep.evaluate(&improved).unwrap().total);
    assert!(after <= before);
    let best = brute_force(&world, &t, &policy).unwrap();
    assert!((after - best).abs() < 1e-9, "improved to {after}, best {best}");
}

#[test]
fn penalises_and_then_excludes_recently_failed_nodes() {
    let mut w = world();
    w.nodes[3].recent_failures = 1;
    let one = topo(vec![vnode("x", NodeType::Any)], vec![]);
    let answer = map(&w, &one, &Policy::default(), 10.0).unwrap();
    assert_eq!(hosts(&answer), ["b1.x"]);
    let dsl = topo(vec![vnode("x", NodeType::Dsl)], vec![]);
    let answer = map(&w, &dsl, &Policy::default(), 10.0).unwrap();
    assert_eq!(answer.terms.unwrap().recent_failures, 1.0);
    w.nodes[3].recent_failures = 2;
    let answer = map(&w, &dsl, &Policy::default(), 10.0).unwrap();
    assert!(only_explanation(&answer).message.contains("2 or more recent failures"));
}

#[test]
fn all_available_nodes_takes_every_admitted_node_of_the_type() {
    let mut t = topo(vec![vnode("probe", NodeType::Any)], vec![]);
    t.options.all_available_nodes = true;
    let answer = run(&t);
    assert_eq!(hosts(&answer), ["a1.x", "a2.x", "b1.x", "c1.x", "e1.x"]);
    assert_eq!(answer.placement[0].vnode, "probe-1");
    t.options.one_node_per_site = true;
    assert_eq!(hosts(&run(&t)), ["a1.x", "b1.x", "c1.x", "e1.x"]);
}

#[test]
fn rejects_bad_input_naming_the_field() {
    let one = topo(vec![vnode("x", NodeType::Any)], vec![]);
    let mut w = world();
    w.nodes[1].id = 1;
    assert_eq!(map(&w, &one, &Policy::default(), 1.0).unwrap_err().field.as_deref(), Some("nodes[1].id"));
    let mut w = world();
    w.paths[0].b = 99;
    assert_eq!(map(&w, &one, &Policy::default(), 1.0).unwrap_err().field.as_deref(), Some("paths[0].b"));
    let mut w = world();
    w.paths.push(path(2, 1, 3.0));
    assert_eq!(map(&w, &one, &Policy::default(), 1.0).unwrap_err().field.as_deref(), Some("paths[6]"));
    let mut w = world();
    w.nodes[2].reliability = 1.5;
    assert_eq!(
        map(&w, &one, &Policy::default(), 1.0).unwrap_err().field.as_deref(),
        Some("nodes[2].reliability")
    );
    assert_eq!(
        map(&world(), &one, &Policy::default(), 0.0).unwrap_err().field.as_deref(),
        Some("time_limit")
    );
    let mut policy = Policy::default();
    policy.admission.max_load = Some(-1.0);
    assert_eq!(map(&world(), &one, &policy, 1.0).unwrap_err().field.as_deref(), Some("admission.max_load"));
}

/// A world of `n` nodes at `n / 3` sites with pseudo-random latencies between every pair (deterministic).
fn random_world(n: u64, seed: u64) -> MapWorld {
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let mut next = move || {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as f64 / f64::from(1u32 << 31)
    };
    let classes = [LinkClass::Internet2, LinkClass::Commodity, LinkClass::International, LinkClass::Dsl];
    let nodes = (0..n)
        .map(|i| {
            let mut c =
                cand(i + 1, &format!("n{i}.x"), &format!("s{}", i / 3), classes[(i % 4) as usize], 0.0);
            c.load = Some(next() * 5.0);
            c.reliability = 0.8 + next() * 0.2;
            c
        })
        .collect();
    let mut paths = Vec::new();
    for a in 1..=n {
        for b in a + 1..=n {
            let mut p = path(a, b, 5.0 + next() * 200.0);
            p.bandwidth_kbps = 1_000.0 + next() * 99_000.0;
            paths.push(p);
        }
    }
    MapWorld { nodes, paths }
}

/// A chain-plus-chords topology of `v` nodes and `links` links with latency targets planted on nodes 0..v.
fn planted(world: &MapWorld, v: usize, links: usize, tolerance: f64) -> Topology {
    let nodes = (0..v).map(|i| vnode(&format!("v{i}"), NodeType::Any)).collect();
    let mut out = Vec::new();
    let mut k = 0;
    while out.len() < links {
        let (a, b) = (k % v, (k * 7 + 1 + k / v) % v);
        k += 1;
        if a == b
            || out
                .iter()
                .any(|l: &VirtualLink| l.a == format!("v{}", a.min(b)) && l.b == format!("v{}", a.max(b)))
        {
            continue;
        }
        let (lo, hi) = (a.min(b), a.max(b));
        let p = world.paths.iter().find(|p| p.a == lo as u64 * 3 + 1 && p.b == hi as u64 * 3 + 1).unwrap();
        out.push(latency_link(&format!("v{lo}"), &format!("v{hi}"), p.latency_ms, tolerance));
    }
    topo(nodes, out)
}

#[test]
fn stops_at_the_time_limit_with_status_and_gap() {
    let world = random_world(180, 7);
    let t = planted(&world, 14, 21, 30.0);
    let start = std::time::Instant::now();
    let answer = map(&world, &t, &Policy::default(), 0.2).unwrap();
    // Generous: the point is that it returns, not how fast.
    assert!(start.elapsed().as_secs() < 60, "the time limit was not honoured");
    assert_eq!(answer.status, Status::Feasible, "{:?} {:?}", answer.status, answer.stats);
    assert!(answer.mip_gap.is_some_and(|g| g > 0.0), "{:?} {:?}", answer.mip_gap, answer.stats);
    assert!(answer.bound.is_some_and(|b| b <= answer.objective.unwrap() + 1e-6));
}

#[test]
fn same_input_same_answer() {
    let world = random_world(60, 3);
    let t = planted(&world, 8, 12, 20.0);
    let mut first = map(&world, &t, &Policy::default(), 30.0).unwrap();
    let mut second = map(&world, &t, &Policy::default(), 30.0).unwrap();
    assert_eq!(first.status, Status::Optimal);
    first.stats.elapsed_ms = 0;
    second.stats.elapsed_ms = 0;
    assert_eq!(first, second);
}

/// An independent statement of the hard constraints, written from the README, not from `prepare.rs`.
fn violations(world: &MapWorld, t: &Topology, policy: &Policy, answer: &Answer) -> Vec<String> {
    let mut bad = Vec::new();
    let node = |id: u64| world.nodes.iter().find(|n| n.id == id).unwrap();
    let mut seen = std::collections::HashSet::new();
    let mut per_site = std::collections::HashMap::<&str, u32>::new();
    for (vn, placed) in t.nodes.iter().zip(&answer.placement) {
        let n = node(placed.node_id);
        let a = &policy.admission;
        if a.check(n).is_some() {
            bad.push(format!("{} not admitted", n.hostname));
        }
        if !vn.node_type.admits(n.link_class, &n.site) {
            bad.push(format!("{} wrong type", vn.name));
        }
        if vn.fixed.as_ref().is_some_and(|f| *f != n.hostname && *f != n.id.to_string()) {
            bad.push(format!("{} not on its fixed node", vn.name));
        }
        if !seen.insert(n.id) {
            bad.push(format!("{} holds two slivers", n.hostname));
        }
        *per_site.entry(&n.site).or_default() += 1;
    }
    if let Some(cap) = t.options.site_cap() {
        bad.extend(per_site.iter().filter(|(_, c)| **c > cap).map(|(s, _)| format!("site {s} over cap")));
    }
    let at = |name: &str| answer.placement.iter().find(|p| p.vnode == name).unwrap().node_id;
    for link in t.links.iter().filter(|l| l.has_targets()) {
        let (p, q) = (at(&link.a), at(&link.b));
        let measured = world
            .paths
            .iter()
            .find(|m| (m.a, m.b) == (p, q) || (m.a, m.b) == (q, p))
            .filter(|m| policy.admission.path_fresh(m.age_s));
        match measured {
            None => bad.push(format!("link {}–{} unmeasured", link.a, link.b)),
            Some(m) if !prepare::within(link, m) => {
                bad.push(format!("link {}–{} out of tolerance", link.a, link.b))
            }
            Some(_) => {}
        }
    }
    bad
}

/// The best objective over every placement (by exhaustive search), or `None` if none is feasible.
fn brute_force(world: &MapWorld, t: &Topology, policy: &Policy) -> Option<f64> {
    let prep = Prepared::new(world, t, policy).ok()?;
    let n = world.nodes.len();
    let mut best: Option<f64> = None;
    let mut placement = vec![0usize; t.nodes.len()];
    loop {
        if let Ok(terms) = prep.evaluate(&placement) {
            best = Some(best.map_or(terms.total, |b: f64| b.min(terms.total)));
        }
        let mut i = 0;
        loop {
            if i == placement.len() {
                return best;
            }
            placement[i] += 1;
            if placement[i] < n {
                break;
            }
            placement[i] = 0;
            i += 1;
        }
    }
}

fn arb_world() -> impl Strategy<Value = MapWorld> {
    let node = (0u8..4, 0u8..3, 0.0f64..6.0, 0.5f64..1.0, 0u32..3, prop::bool::weighted(0.9));
    (prop::collection::vec(node, 3..7), prop::collection::vec((1.0f64..100.0, prop::bool::weighted(0.8)), 21))
        .prop_map(|(nodes, lat)| {
            let classes =
                [LinkClass::Internet2, LinkClass::Commodity, LinkClass::International, LinkClass::Dsl];
            let nodes: Vec<CandidateNode> = nodes
                .into_iter()
                .enumerate()
                .map(|(i, (class, site, load, rel, fails, fresh))| {
                    let mut c = cand(
                        i as u64 + 1,
                        &format!("h{i}"),
                        &format!("s{site}"),
                        classes[class as usize],
                        load,
                    );
                    c.reliability = rel;
                    c.recent_failures = fails;
                    c.metric_age_s = Some(if fresh { 10.0 } else { 5_000.0 });
                    c
                })
                .collect();
            let n = nodes.len() as u64;
            let mut paths = Vec::new();
            let mut k = 0;
            for a in 1..=n {
                for b in a + 1..=n {
                    let (latency, measured) = lat[k];
                    k += 1;
                    if measured {
                        paths.push(path(a, b, latency.round()));
                    }
                }
            }
            MapWorld { nodes, paths }
        })
}

fn arb_topology() -> impl Strategy<Value = Topology> {
    let types = prop_oneof![
        4 => Just(NodeType::Any),
        1 => Just(NodeType::Internet2),
        1 => Just(NodeType::Dsl),
        1 => Just(NodeType::Site("s0".into())),
    ];
    (
        prop::collection::vec(types, 1..5),
        prop::collection::vec((0usize..4, 0usize..4, 1.0f64..100.0, 0.0f64..30.0), 0..5),
        0u8..3,
        prop::option::weighted(0.2, 1u64..7),
    )
        .prop_map(|(types, links, cap, fixed)| {
            let n = types.len();
            let mut nodes: Vec<VirtualNode> =
                types.into_iter().enumerate().map(|(i, t)| vnode(&format!("v{i}"), t)).collect();
            if let Some(id) = fixed {
                nodes[0].fixed = Some(id.to_string());
            }
            let mut out: Vec<VirtualLink> = Vec::new();
            for (a, b, value, tol) in links {
                let (a, b) = (a % n, b % n);
                let (lo, hi) = (a.min(b), a.max(b));
                if lo != hi && !out.iter().any(|l| l.a == format!("v{lo}") && l.b == format!("v{hi}")) {
                    out.push(latency_link(&format!("v{lo}"), &format!("v{hi}"), value.round(), tol.round()));
                }
            }
            let mut t = topo(nodes, out);
            t.options.max_nodes_per_site = (cap > 0).then_some(u32::from(cap));
            t
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn every_answer_meets_every_hard_constraint(world in arb_world(), t in arb_topology()) {
        let policy = Policy::default();
        prop_assume!(t.validate().is_ok());
        let answer = map(&world, &t, &policy, 10.0).unwrap();
        let best = brute_force(&world, &t, &policy);
        match answer.status {
            Status::Optimal | Status::Feasible => {
                prop_assert_eq!(answer.placement.len(), t.nodes.len());
                let bad = violations(&world, &t, &policy, &answer);
                prop_assert!(bad.is_empty(), "{:?}", bad);
                let best = best.expect("brute force finds what the mapper found");
                prop_assert!(answer.objective.unwrap() <= best + 1e-6 * (1.0 + best.abs()), "{:?} vs {}", answer.objective, best);
                prop_assert!(answer.bound.unwrap() <= best + 1e-6 * (1.0 + best.abs()), "bound {:?} vs {}", answer.bound, best);
            }
            Status::Infeasible => {
                prop_assert!(!answer.explanation.is_empty());
                prop_assert_eq!(best, None, "{:?}", answer.explanation);
            }
            Status::Unknown => prop_assert!(false, "a tiny instance timed out"),
        }
    }
}
