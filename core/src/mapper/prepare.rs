//! Everything decided before a model is built: admission, candidate nodes per virtual node, grouping of
//! interchangeable virtual nodes, and candidate node pairs per constrained link, pruned by tolerance and then
//! by arc consistency. Pruning here is what keeps the MILP small; the checks here are also what explain most
//! infeasible requests precisely (see `explain.rs`). [`Prepared::evaluate`] is the one definition of a
//! placement's hard constraints and objective, shared by the solver's answer, the heuristic and the baselines.

use super::{
    answer::{Explanation, Terms},
    explain,
    policy::Policy,
    world::{MapWorld, MeasuredPath},
};
use model::topology::{NodeType, Topology, VirtualLink};
use std::collections::{BTreeMap, HashMap};

/// A set of interchangeable virtual nodes (same type, not fixed, no constrained links): one binary per
/// (group, node) in the model instead of one per (virtual node, node).
#[derive(Clone, Debug)]
pub struct Group {
    pub node_type: NodeType,
    /// Virtual node indices, in topology order.
    pub members: Vec<usize>,
    /// World node indices, ascending.
    pub cands: Vec<usize>,
}

/// A virtual node placed individually: fixed, or an endpoint of a constrained link.
#[derive(Clone, Debug)]
pub struct Single {
    pub vnode: usize,
    /// World node indices, ascending (narrowing only removes).
    pub cands: Vec<usize>,
}

/// A candidate node pair for a constrained link: `p` for the link's `a` end, `q` for its `b` end.
#[derive(Clone, Copy, Debug)]
pub struct Pair {
    pub p: usize,
    pub q: usize,
    pub cost: f64,
}

/// A link with at least one target, between two singles.
#[derive(Clone, Debug)]
pub struct LinkPlan {
    /// Index into the topology's links.
    pub link: usize,
    /// Single indices of the `a` and `b` ends.
    pub u: usize,
    pub v: usize,
    pub pairs: Vec<Pair>,
}

#[derive(Debug)]
pub struct Prepared<'a> {
    pub world: &'a MapWorld,
    pub topo: &'a Topology,
    pub policy: &'a Policy,
    pub admitted: Vec<bool>,
    /// Sum of the node terms per world node.
    pub node_cost: Vec<f64>,
    pub site_of: Vec<usize>,
    pub site_count: usize,
    pub cap: Option<u32>,
    /// Fresh measured paths per world node: (other world node, path index), ascending.
    pub adj: Vec<Vec<(usize, usize)>>,
    pub groups: Vec<Group>,
    pub singles: Vec<Single>,
    pub links: Vec<LinkPlan>,
    /// The world node each fixed virtual node must use.
    pub fixed: Vec<Option<usize>>,
}

impl<'a> Prepared<'a> {
    /// Prepares a validated world, topology and policy; an `Err` explains why no placement can exist.
    pub fn new(
        world: &'a MapWorld,
        topo: &'a Topology,
        policy: &'a Policy,
    ) -> Result<Self, Vec<Explanation>> {
        let mut prep = Self::base(world, topo, policy);
        prep.fixed = explain::resolve_fixed(&prep)?;
        prep.build_slots();
        explain::check_counts(&prep)?;
        prep.build_pairs()?;
        prep.arc_consistency()?;
        Ok(prep)
    }

    fn base(world: &'a MapWorld, topo: &'a Topology, policy: &'a Policy) -> Self {
        let admission = &policy.admission;
        let admitted: Vec<bool> = world.nodes.iter().map(|n| admission.check(n).is_none()).collect();
        let node_cost = world.nodes.iter().map(|n| policy.node_terms(n).iter().sum()).collect();
        let mut site_ids = BTreeMap::new();
        for n in &world.nodes {
            let next = site_ids.len();
            site_ids.entry(n.site.as_str()).or_insert(next);
        }
        let site_of = world.nodes.iter().map(|n| site_ids[n.site.as_str()]).collect();
        let index: HashMap<u64, usize> = world.nodes.iter().enumerate().map(|(i, n)| (n.id, i)).collect();
        let mut adj = vec![Vec::new(); world.nodes.len()];
        for (k, path) in world.paths.iter().enumerate() {
            if admission.path_fresh(path.age_s) {
                let (a, b) = (index[&path.a], index[&path.b]);
                adj[a].push((b, k));
                adj[b].push((a, k));
            }
        }
        adj.iter_mut().for_each(|list| list.sort_unstable());
        Self {
            world,
            topo,
            policy,
            admitted,
            node_cost,
            site_of,
            site_count: site_ids.len(),
            cap: topo.options.site_cap(),
            adj,
            groups: Vec::new(),
            singles: Vec::new(),
            links: Vec::new(),
            fixed: vec![None; topo.nodes.len()],
        }
    }

    /// Candidate world nodes for a non-fixed virtual node of `node_type`.
    pub fn free_candidates(&self, node_type: &NodeType) -> Vec<usize> {
        let taken = self.membership(&self.fixed.iter().flatten().copied().collect::<Vec<_>>());
        (0..self.world.nodes.len())
            .filter(|&j| self.admitted[j] && !taken[j])
            .filter(|&j| node_type.admits(self.world.nodes[j].link_class, &self.world.nodes[j].site))
            .collect()
    }

    fn build_slots(&mut self) {
        let mut linked = vec![false; self.topo.nodes.len()];
        let index = self.vnode_index();
        for link in self.topo.links.iter().filter(|l| l.has_targets()) {
            linked[index[link.a.as_str()]] = true;
            linked[index[link.b.as_str()]] = true;
        }
        let mut by_type: BTreeMap<&NodeType, Vec<usize>> = BTreeMap::new();
        for (i, vnode) in self.topo.nodes.iter().enumerate() {
            if let Some(j) = self.fixed[i] {
                self.singles.push(Single { vnode: i, cands: vec![j] });
            } else if linked[i] {
                let cands = self.free_candidates(&vnode.node_type);
                self.singles.push(Single { vnode: i, cands });
            } else {
                by_type.entry(&vnode.node_type).or_default().push(i);
            }
        }
        self.groups = by_type
            .into_iter()
            .map(|(t, members)| Group { node_type: t.clone(), members, cands: self.free_candidates(t) })
            .collect();
    }

    pub fn vnode_index(&self) -> HashMap<&'a str, usize> {
        self.topo.nodes.iter().enumerate().map(|(i, n)| (n.name.as_str(), i)).collect()
    }

    fn single_of(&self) -> HashMap<usize, usize> {
        self.singles.iter().enumerate().map(|(s, single)| (single.vnode, s)).collect()
    }

    fn build_pairs(&mut self) -> Result<(), Vec<Explanation>> {
        let index = self.vnode_index();
        let single_of = self.single_of();
        let mut misses = Vec::new();
        for (l, link) in self.topo.links.iter().enumerate().filter(|(_, l)| l.has_targets()) {
            let (u, v) = (single_of[&index[link.a.as_str()]], single_of[&index[link.b.as_str()]]);
            let pairs = self.pairs_for(link, u, v);
            if pairs.is_empty() {
                misses.push(explain::nearest_miss(self, link, u, v));
            }
            self.links.push(LinkPlan { link: l, u, v, pairs });
        }
        if misses.is_empty() { Ok(()) } else { Err(misses) }
    }

    /// Every fresh measured pair between the two ends' candidates that meets the link's tolerances.
    fn pairs_for(&self, link: &VirtualLink, u: usize, v: usize) -> Vec<Pair> {
        let in_v = self.membership(&self.singles[v].cands);
        let mut pairs = Vec::new();
        for &p in &self.singles[u].cands {
            for &(q, k) in &self.adj[p] {
                if !in_v[q] || (self.cap == Some(1) && self.site_of[p] == self.site_of[q]) {
                    continue;
                }
                let path = &self.world.paths[k];
                if within(link, path) {
                    pairs.push(Pair { p, q, cost: self.link_cost(link, path) });
                }
            }
        }
        pairs
    }

    pub fn membership(&self, nodes: &[usize]) -> Vec<bool> {
        let mut member = vec![false; self.world.nodes.len()];
        nodes.iter().for_each(|&j| member[j] = true);
        member
    }

    /// Removes candidates with no fitting pair on some link, and pairs whose ends lost their candidacy,
    /// until nothing changes.
    fn arc_consistency(&mut self) -> Result<(), Vec<Explanation>> {
        loop {
            let mut changed = false;
            for l in 0..self.links.len() {
                let (u, v) = (self.links[l].u, self.links[l].v);
                let in_u = self.membership(&self.singles[u].cands);
                let in_v = self.membership(&self.singles[v].cands);
                self.links[l].pairs.retain(|pr| in_u[pr.p] && in_v[pr.q]);
                if self.links[l].pairs.is_empty() {
                    return Err(vec![explain::no_consistent_pair(self, l)]);
                }
                let support_u =
                    self.membership(&self.links[l].pairs.iter().map(|pr| pr.p).collect::<Vec<_>>());
                let support_v =
                    self.membership(&self.links[l].pairs.iter().map(|pr| pr.q).collect::<Vec<_>>());
                let before = self.singles[u].cands.len() + self.singles[v].cands.len();
                self.singles[u].cands.retain(|&j| support_u[j]);
                self.singles[v].cands.retain(|&j| support_v[j]);
                changed |= self.singles[u].cands.len() + self.singles[v].cands.len() != before;
            }
            if !changed {
                return Ok(());
            }
        }
    }

    /// Per single: (link plan, the other single, whether this single is the link's `a` end).
    pub fn incident(&self) -> Vec<Vec<(usize, usize, bool)>> {
        let mut incident = vec![Vec::new(); self.singles.len()];
        for (l, plan) in self.links.iter().enumerate() {
            incident[plan.u].push((l, plan.v, true));
            incident[plan.v].push((l, plan.u, false));
        }
        incident
    }

    /// Per link plan: (`a` end's node, `b` end's node) → the pair's cost.
    pub fn pair_costs(&self) -> Vec<HashMap<(usize, usize), f64>> {
        self.links.iter().map(|plan| plan.pairs.iter().map(|pr| ((pr.p, pr.q), pr.cost)).collect()).collect()
    }

    /// The fresh measured path between two world nodes, if any.
    pub fn path(&self, p: usize, q: usize) -> Option<&'a MeasuredPath> {
        let list = &self.adj[p];
        let at = list.binary_search_by(|&(other, _)| other.cmp(&q)).ok()?;
        Some(&self.world.paths[list[at].1])
    }

    /// A link's deviation terms (latency, bandwidth, loss) on `path`, weighted.
    pub fn link_terms(&self, link: &VirtualLink, path: &MeasuredPath) -> [f64; 3] {
        let w = self.policy.weights.link;
        let latency = link
            .latency
            .map_or(0.0, |t| w * link.weights.latency * (path.latency_ms - t.value).abs() / t.value.max(1.0));
        let bandwidth = link.bandwidth.map_or(0.0, |t| {
            w * link.weights.bandwidth * (path.bandwidth_kbps.max(1.0) / t.value).ln().abs()
        });
        let loss = link.loss.map_or(0.0, |t| w * link.weights.loss * (path.loss - t.value).abs() / 0.01);
        [latency, bandwidth, loss]
    }

    fn link_cost(&self, link: &VirtualLink, path: &MeasuredPath) -> f64 {
        self.link_terms(link, path).iter().sum()
    }

    /// Checks every hard constraint of `placement` (world node index per virtual node, in topology order)
    /// and returns its objective terms, or the first violated constraint.
    pub fn evaluate(&self, placement: &[usize]) -> Result<Terms, String> {
        self.check_nodes(placement)?;
        let mut terms = Terms::default();
        for &j in placement {
            let [load, unrel, fail] = self.policy.node_terms(&self.world.nodes[j]);
            terms.load += load;
            terms.unreliability += unrel;
            terms.recent_failures += fail;
        }
        terms.site_spread = self.site_spread(placement)?;
        let index = self.vnode_index();
        for link in self.topo.links.iter().filter(|l| l.has_targets()) {
            let (p, q) = (placement[index[link.a.as_str()]], placement[index[link.b.as_str()]]);
            let path =
                self.path(p, q).ok_or_else(|| format!("link {}–{}: unmeasured path", link.a, link.b))?;
            if !within(link, path) {
                return Err(format!("link {}–{}: path out of tolerance", link.a, link.b));
            }
            let [lat, bw, loss] = self.link_terms(link, path);
            terms.latency += lat;
            terms.bandwidth += bw;
            terms.loss += loss;
        }
        terms.sum();
        Ok(terms)
    }

    fn check_nodes(&self, placement: &[usize]) -> Result<(), String> {
        if placement.len() != self.topo.nodes.len() {
            return Err("placement does not cover every virtual node".into());
        }
        let mut used = vec![false; self.world.nodes.len()];
        for (vnode, &j) in self.topo.nodes.iter().zip(placement) {
            let node = self.world.nodes.get(j).ok_or("no such node")?;
            if std::mem::replace(&mut used[j], true) {
                return Err(format!("{} holds two slivers", node.hostname));
            }
            if !self.admitted[j] {
                return Err(format!("{} fails admission", node.hostname));
            }
            if !vnode.node_type.admits(node.link_class, &node.site) {
                return Err(format!("{} is not of type {}", node.hostname, vnode.node_type.label()));
            }
        }
        for (i, fixed) in self.fixed.iter().enumerate() {
            if fixed.is_some_and(|j| placement[i] != j) {
                return Err(format!("{} is not on its fixed node", self.topo.nodes[i].name));
            }
        }
        Ok(())
    }

    fn site_spread(&self, placement: &[usize]) -> Result<f64, String> {
        let mut count = vec![0u32; self.site_count];
        placement.iter().for_each(|&j| count[self.site_of[j]] += 1);
        if let Some(cap) = self.cap
            && let Some(s) = count.iter().position(|&c| c > cap)
        {
            let site = &self.world.nodes
                [placement.iter().copied().find(|&j| self.site_of[j] == s).unwrap_or(0)]
            .site;
            return Err(format!("site {site} holds more than {cap} nodes"));
        }
        let extra: u32 = count.iter().map(|&c| c.saturating_sub(1)).sum();
        Ok(self.policy.weights.site_extra * f64::from(extra))
    }
}

/// Whether `path` meets every target of `link`.
pub fn within(link: &VirtualLink, path: &MeasuredPath) -> bool {
    link.latency.is_none_or(|t| t.admits(path.latency_ms))
        && link.bandwidth.is_none_or(|t| t.admits(path.bandwidth_kbps))
        && link.loss.is_none_or(|t| t.admits(path.loss))
}
