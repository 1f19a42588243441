//! A fast heuristic placement: depth-first search with a step budget over the individually placed virtual
//! nodes (most constrained first, cheapest candidate first), then a greedy pass over the groups. It
//! warm-starts the MILP, so a zero-violation answer exists early even when the proof of optimality takes
//! long, and it is the "greedy" baseline of the benchmarks.

use super::prepare::Prepared;
use std::{collections::HashMap, time::Instant};

/// Steps (candidate tries) the search may take before giving up.
pub const DEFAULT_BUDGET: usize = 200_000;

struct Search<'p, 'a> {
    prep: &'p Prepared<'a>,
    /// Per single: (link plan index, the other single, whether this single is the link's `a` end).
    incident: Vec<Vec<(usize, usize, bool)>>,
    pair_cost: Vec<HashMap<(usize, usize), f64>>,
    placed: Vec<Option<usize>>,
    used: Vec<bool>,
    site_load: Vec<u32>,
    budget: usize,
    deadline: Option<Instant>,
}

/// A placement (world node per virtual node) meeting every hard constraint, or `None` when the search
/// found none within `budget` steps.
pub fn greedy(prep: &Prepared, budget: usize) -> Option<Vec<usize>> {
    search(Search::new(prep, budget, None))
}

/// [`greedy`], also giving up at `deadline`: a search that fails takes its whole budget, which on large
/// link models is seconds (1.3 s at 20 v / 30 links with 65,000 candidate pairs) that the solver needs more.
pub fn greedy_until(prep: &Prepared, budget: usize, deadline: Instant) -> Option<Vec<usize>> {
    search(Search::new(prep, budget, Some(deadline)))
}

fn search(mut search: Search) -> Option<Vec<usize>> {
    let prep = search.prep;
    let order = search.order();
    if !search.dfs(&order, 0) {
        return None;
    }
    let mut placement = vec![usize::MAX; prep.topo.nodes.len()];
    for (s, single) in prep.singles.iter().enumerate() {
        placement[single.vnode] = search.placed[s]?;
    }
    search.fill_groups(&mut placement)?;
    Some(placement)
}

impl<'p, 'a> Search<'p, 'a> {
    fn new(prep: &'p Prepared<'a>, budget: usize, deadline: Option<Instant>) -> Self {
        let mut incident = vec![Vec::new(); prep.singles.len()];
        for (l, plan) in prep.links.iter().enumerate() {
            incident[plan.u].push((l, plan.v, true));
            incident[plan.v].push((l, plan.u, false));
        }
        let pair_cost = prep
            .links
            .iter()
            .map(|plan| plan.pairs.iter().map(|pr| ((pr.p, pr.q), pr.cost)).collect())
            .collect();
        Self {
            prep,
            incident,
            pair_cost,
            placed: vec![None; prep.singles.len()],
            used: vec![false; prep.world.nodes.len()],
            site_load: vec![0; prep.site_count],
            budget,
            deadline,
        }
    }

    /// Singles in search order: next is the one with most already-ordered neighbours, then fewest candidates.
    fn order(&self) -> Vec<usize> {
        let n = self.prep.singles.len();
        let mut chosen = vec![false; n];
        let mut order = Vec::with_capacity(n);
        for _ in 0..n {
            let next = (0..n)
                .filter(|&s| !chosen[s])
                .min_by_key(|&s| {
                    let linked = self.incident[s].iter().filter(|&&(_, o, _)| chosen[o]).count();
                    (std::cmp::Reverse(linked), self.prep.singles[s].cands.len(), s)
                })
                .expect("one is left");
            chosen[next] = true;
            order.push(next);
        }
        order
    }

    fn site_ok(&self, j: usize) -> bool {
        self.prep.cap.is_none_or(|cap| self.site_load[self.prep.site_of[j]] < cap)
    }

    /// Cost of adding node `j` at its site: the node terms plus the site-spread penalty.
    fn node_step(&self, j: usize) -> f64 {
        let extra =
            if self.site_load[self.prep.site_of[j]] > 0 { self.prep.policy.weights.site_extra } else { 0.0 };
        self.prep.node_cost[j] + extra
    }

    /// The added cost of putting single `s` on `j`, or `None` when a link to a placed neighbour does not fit.
    fn step_cost(&self, s: usize, j: usize) -> Option<f64> {
        let mut cost = self.node_step(j);
        for &(l, other, is_a) in &self.incident[s] {
            if let Some(k) = self.placed[other] {
                let key = if is_a { (j, k) } else { (k, j) };
                cost += self.pair_cost[l].get(&key)?;
            }
        }
        Some(cost)
    }

    fn set(&mut self, s: usize, j: Option<usize>) {
        let (node, add) = match j {
            Some(j) => (j, true),
            None => (self.placed[s].expect("was placed"), false),
        };
        self.used[node] = add;
        let load = &mut self.site_load[self.prep.site_of[node]];
        *load = if add { *load + 1 } else { *load - 1 };
        self.placed[s] = j;
    }

    fn dfs(&mut self, order: &[usize], depth: usize) -> bool {
        let Some(&s) = order.get(depth) else { return true };
        let mut options: Vec<(f64, usize)> = self.prep.singles[s]
            .cands
            .iter()
            .filter(|&&j| !self.used[j] && self.site_ok(j))
            .filter_map(|&j| self.step_cost(s, j).map(|c| (c, j)))
            .collect();
        options.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for (_, j) in options {
            if self.budget == 0 || self.deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
            self.budget -= 1;
            self.set(s, Some(j));
            if self.dfs(order, depth + 1) {
                return true;
            }
            self.set(s, None);
        }
        false
    }

    /// Places every group member on the cheapest free candidate, most restricted groups first.
    fn fill_groups(&mut self, placement: &mut [usize]) -> Option<()> {
        let mut groups: Vec<_> = self.prep.groups.iter().collect();
        groups.sort_by_key(|g| g.cands.len());
        for group in groups {
            for &member in &group.members {
                let best = group
                    .cands
                    .iter()
                    .copied()
                    .filter(|&j| !self.used[j] && self.site_ok(j))
                    .min_by(|&a, &b| self.node_step(a).total_cmp(&self.node_step(b)).then(a.cmp(&b)))?;
                self.used[best] = true;
                self.site_load[self.prep.site_of[best]] += 1;
                placement[member] = best;
            }
        }
        Some(())
    }
}
