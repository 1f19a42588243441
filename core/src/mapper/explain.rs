//! Explanations of infeasible requests, found by cheap exact checks before any model is built: which
//! constraint class binds (fixed node, admission, node type, site cap, link tolerance) and the nearest miss,
//! e.g. "no node pair for link a–b within latency 50 ± 5 ms: closest is 61 ms between …" or "3 DSL nodes
//! requested, 2 pass admission". Operators read these to decide what to relax, so they name elements.

use super::{
    answer::{ConstraintClass, Explanation},
    policy::Rejection,
    prepare::Prepared,
};
use model::topology::{NodeType, Target, VirtualLink};
use std::collections::BTreeMap;

fn explanation(class: ConstraintClass, message: String) -> Explanation {
    Explanation { class, message }
}

/// Finds each fixed virtual node's world node; explains unknown, unadmitted or mistyped ones.
pub fn resolve_fixed(prep: &Prepared) -> Result<Vec<Option<usize>>, Vec<Explanation>> {
    let mut fixed = vec![None; prep.topo.nodes.len()];
    let mut problems = Vec::new();
    for (i, vnode) in prep.topo.nodes.iter().enumerate() {
        let Some(want) = &vnode.fixed else { continue };
        let found = prep.world.nodes.iter().position(|n| &n.hostname == want || n.id.to_string() == *want);
        let Some(j) = found else {
            let msg = format!("node {} is fixed to {want}, which is not a known testbed node", vnode.name);
            problems.push(explanation(ConstraintClass::FixedNode, msg));
            continue;
        };
        let node = &prep.world.nodes[j];
        if let Some(why) = prep.policy.admission.check(node) {
            let msg = format!(
                "node {} is fixed to {}, which fails admission: {}",
                vnode.name,
                node.hostname,
                why.describe(&prep.policy.admission)
            );
            problems.push(explanation(ConstraintClass::FixedNode, msg));
        } else if !vnode.node_type.admits(node.link_class, &node.site) {
            let msg = format!(
                "node {} is fixed to {}, which is not of the requested type {} (it is {:?} at site {})",
                vnode.name,
                node.hostname,
                vnode.node_type.label(),
                node.link_class,
                node.site
            );
            problems.push(explanation(ConstraintClass::FixedNode, msg));
        } else {
            fixed[i] = Some(j);
        }
    }
    if problems.is_empty() { Ok(fixed) } else { Err(problems) }
}

/// Per requested node type, and for all non-fixed nodes together: are there enough admitted nodes, and
/// enough once the site cap applies?
pub fn check_counts(prep: &Prepared) -> Result<(), Vec<Explanation>> {
    let mut wanted: BTreeMap<&NodeType, usize> = BTreeMap::new();
    for (i, vnode) in prep.topo.nodes.iter().enumerate() {
        if prep.fixed[i].is_none() {
            *wanted.entry(&vnode.node_type).or_default() += 1;
        }
    }
    let mut problems: Vec<Explanation> =
        wanted.iter().filter_map(|(t, &n)| count_problem(prep, t, n, &format!("{} ", t.label()))).collect();
    let total: usize = wanted.values().sum();
    if problems.is_empty() && wanted.len() > 1 {
        problems.extend(count_problem(prep, &NodeType::Any, total, "").map(|mut e| {
            e.message = format!("{} (counting every requested type together)", e.message);
            e
        }));
    }
    if problems.is_empty() { Ok(()) } else { Err(problems) }
}

fn count_problem(prep: &Prepared, node_type: &NodeType, wanted: usize, label: &str) -> Option<Explanation> {
    let cands = prep.free_candidates(node_type);
    let plural = if wanted == 1 { "" } else { "s" };
    if cands.len() < wanted {
        let (known, rejected) = rejections(prep, node_type);
        let taken = prep.fixed.iter().flatten().filter(|&&j| admits(prep, node_type, j)).count();
        let class =
            if known < wanted + taken { ConstraintClass::NodeType } else { ConstraintClass::Admission };
        let mut msg = format!(
            "{wanted} {label}node{plural} requested, {} pass admission ({known} {label}node{} known",
            cands.len() + taken,
            if known == 1 { "" } else { "s" }
        );
        if !rejected.is_empty() {
            msg += &format!("; rejected: {rejected}");
        }
        if taken > 0 {
            msg += &format!("; {taken} taken by fixed nodes");
        }
        return Some(explanation(class, msg + ")"));
    }
    let cap = prep.cap?;
    let usable = capped(prep, &cands, cap);
    (usable < wanted).then(|| {
        let msg = format!(
            "{wanted} {label}node{plural} requested with at most {cap} per site: the {} admitted ones allow only {usable}",
            cands.len()
        );
        explanation(ConstraintClass::SiteCap, msg)
    })
}

fn admits(prep: &Prepared, node_type: &NodeType, j: usize) -> bool {
    let node = &prep.world.nodes[j];
    node_type.admits(node.link_class, &node.site)
}

/// How many of `cands` a per-site cap leaves usable, after fixed nodes took their share of each site.
fn capped(prep: &Prepared, cands: &[usize], cap: u32) -> usize {
    let mut per_site = vec![0usize; prep.site_count];
    cands.iter().for_each(|&j| per_site[prep.site_of[j]] += 1);
    let mut room = vec![cap as usize; prep.site_count];
    prep.fixed
        .iter()
        .flatten()
        .for_each(|&j| room[prep.site_of[j]] = room[prep.site_of[j]].saturating_sub(1));
    per_site.iter().zip(&room).map(|(&n, &r)| n.min(r)).sum()
}

/// Nodes of a type in the world, and why the rejected ones failed admission ("2 load above 4, …").
fn rejections(prep: &Prepared, node_type: &NodeType) -> (usize, String) {
    let mut known = 0;
    let mut why: BTreeMap<Rejection, usize> = BTreeMap::new();
    for node in &prep.world.nodes {
        if node_type.admits(node.link_class, &node.site) {
            known += 1;
            if let Some(r) = prep.policy.admission.check(node) {
                *why.entry(r).or_default() += 1;
            }
        }
    }
    let text: Vec<String> =
        why.iter().map(|(r, n)| format!("{n} with {}", r.describe(&prep.policy.admission))).collect();
    (known, text.join(", "))
}

/// "within latency 50 ± 5 ms, loss 0 ± 0.01"
pub fn describe_targets(link: &VirtualLink) -> String {
    let part = |name: &str, t: &Option<Target>, unit: &str| {
        t.map(|t| format!("{name} {} ± {}{unit}", t.value, t.tolerance))
    };
    [
        part("latency", &link.latency, " ms"),
        part("bandwidth", &link.bandwidth, " kbps"),
        part("loss", &link.loss, ""),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(", ")
}

/// How far a measured value set misses a link's targets, relative to each target's size.
fn miss(link: &VirtualLink, values: [f64; 3]) -> f64 {
    [link.latency, link.bandwidth, link.loss]
        .iter()
        .zip(values)
        .filter_map(|(t, m)| {
            t.map(|t| ((m - t.value).abs() - t.tolerance).max(0.0) / t.value.abs().max(1e-3))
        })
        .sum()
}

/// Explains a link with no fitting pair among its ends' candidates: the closest measured pair, or that
/// none is measured.
pub fn nearest_miss(prep: &Prepared, link: &VirtualLink, u: usize, v: usize) -> Explanation {
    let in_v = prep.membership(&prep.singles[v].cands);
    let mut best: Option<(f64, usize, usize)> = None;
    let mut same_site_fits = false;
    for &p in &prep.singles[u].cands {
        for &(q, k) in prep.adj[p].iter().filter(|&&(q, _)| in_v[q]) {
            let path = &prep.world.paths[k];
            let score = miss(link, [path.latency_ms, path.bandwidth_kbps, path.loss]);
            if prep.cap == Some(1) && prep.site_of[p] == prep.site_of[q] {
                same_site_fits |= score == 0.0;
            } else if best.is_none_or(|(b, _, _)| score < b) {
                best = Some((score, p, q));
            }
        }
    }
    let head = format!("no node pair for link {}–{} within {}", link.a, link.b, describe_targets(link));
    if same_site_fits {
        let msg = format!(
            "{head} at two different sites: the only fitting pairs share a site, and the experiment allows one node per site"
        );
        return explanation(ConstraintClass::SiteCap, msg);
    }
    let message = match best {
        Some((_, p, q)) => {
            let path = prep.path(p, q).expect("came from the adjacency list");
            let mut got = Vec::new();
            if link.latency.is_some() {
                got.push(format!("{} ms", path.latency_ms));
            }
            if link.bandwidth.is_some() {
                got.push(format!("{} kbps", path.bandwidth_kbps));
            }
            if link.loss.is_some() {
                got.push(format!("loss {}", path.loss));
            }
            let (hp, hq) = (&prep.world.nodes[p].hostname, &prep.world.nodes[q].hostname);
            format!("{head}: closest is {} between {hp} and {hq}", got.join(", "))
        }
        None => format!(
            "{head}: no measured path{} between the {} candidate nodes of {} and the {} of {}; \
             unmeasured paths are never assumed good",
            prep.policy
                .admission
                .max_path_age_s
                .map_or_else(String::new, |s| format!(" (fresher than {s} s)")),
            prep.singles[u].cands.len(),
            link.a,
            prep.singles[v].cands.len(),
            link.b
        ),
    };
    explanation(ConstraintClass::Link, message)
}

/// Explains a link whose fitting pairs all vanished because their ends cannot meet other links too.
pub fn no_consistent_pair(prep: &Prepared, l: usize) -> Explanation {
    let link = &prep.topo.links[prep.links[l].link];
    let others: Vec<String> = prep
        .links
        .iter()
        .filter(|o| o.link != prep.links[l].link)
        .map(|o| &prep.topo.links[o.link])
        .filter(|o| [&o.a, &o.b].iter().any(|e| **e == link.a || **e == link.b))
        .map(|o| format!("{}–{}", o.a, o.b))
        .collect();
    let message = format!(
        "no node pair for link {}–{} within {} also lets {} and {} meet their other links ({})",
        link.a,
        link.b,
        describe_targets(link),
        link.a,
        link.b,
        others.join(", ")
    );
    explanation(ConstraintClass::Link, message)
}
