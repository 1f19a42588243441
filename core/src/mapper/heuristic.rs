//! A fast heuristic placement: depth-first search with a step budget over the individually placed virtual
//! nodes (most constrained first, cheapest candidate first), then a greedy pass over the groups. It
//! warm-starts the MILP, so a zero-violation answer exists early even when the proof of optimality takes
//! long, and it is the "greedy" baseline of the benchmarks.

use super::prepare::Prepared;
use std::{collections::HashMap, time::Instant};

/// Steps (candidate tries) the search may take before giving up.
pub const DEFAULT_BUDGET: usize = 200_000;
/// Steps the warm start's search may take before the mapper turns to annealing (about 0.1 s).
pub const WARM_BUDGET: usize = 20_000;

struct Search<'p, 'a> {
    prep: &'p Prepared<'a>,
    /// Per single: (link plan index, the other single, whether this single is the link's `a` end).
    incident: Vec<Vec<(usize, usize, bool)>>,
    pair_cost: Vec<HashMap<(usize, usize), f64>>,
    /// Per link plan and end (`a` = 0, `b` = 1): world node → the nodes the other end may take with it.
    partners: Vec<[HashMap<usize, Vec<usize>>; 2]>,
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

/// Virtual nodes freed together in one large-neighbourhood step of [`improve`]: the next size is tried
/// when a round of the previous one improves nothing.
const NEIGHBOURHOODS: [usize; 3] = [6, 9, 12];
/// Steps one neighbourhood's exact search may take, per virtual node freed.
const NEIGHBOURHOOD_BUDGET: usize = 5_000;
/// Steps [`improve`] may take in all.
pub const IMPROVE_BUDGET: usize = 2_000_000;

/// Completes a placement of the singles (world node per single) with the groups, greedily.
pub fn with_groups(prep: &Prepared, singles: &[usize]) -> Option<Vec<usize>> {
    let mut search = Search::new(prep, 0, None);
    let mut placement = vec![usize::MAX; prep.topo.nodes.len()];
    for (s, &j) in singles.iter().enumerate() {
        search.set(s, Some(j));
        placement[prep.singles[s].vnode] = j;
    }
    search.fill_groups(&mut placement)?;
    Some(placement)
}

/// Improves a placement by large-neighbourhood search: frees a virtual node and linked ones around it
/// (see [`NEIGHBOURHOODS`]), places them again by an exact depth-first search with the others fixed, keeps
/// the result when it is cheaper; round after round until a round of the largest size improves nothing, or
/// `budget` steps or `deadline` run out. Local, but exact within each neighbourhood: on planted 20-node
/// rings with chords it takes annealing's placements most of the way to the optimum in well under a second,
/// which is what lets the solver prove a small gap early.
pub fn improve(prep: &Prepared, placement: &[usize], budget: usize, deadline: Instant) -> Vec<usize> {
    let mut search = Search::new(prep, budget, Some(deadline));
    let mut is_single = vec![false; prep.topo.nodes.len()];
    for (s, single) in prep.singles.iter().enumerate() {
        is_single[single.vnode] = true;
        search.set(s, Some(placement[single.vnode]));
    }
    for (vnode, &j) in placement.iter().enumerate().filter(|&(v, _)| !is_single[v]) {
        debug_assert!(!search.used[j], "{vnode} shares a node");
        search.used[j] = true;
        search.site_load[prep.site_of[j]] += 1;
    }
    let mut size = 0;
    'rounds: while size < NEIGHBOURHOODS.len() {
        let mut improved = false;
        for s in 0..prep.singles.len() {
            if search.budget == 0 || search.deadline.is_some_and(|d| Instant::now() >= d) {
                break 'rounds;
            }
            improved |= search.reoptimise(&search.neighbourhood(s, NEIGHBOURHOODS[size]));
        }
        size = if improved { 0 } else { size + 1 };
    }
    let mut out = placement.to_vec();
    for (s, single) in prep.singles.iter().enumerate() {
        out[single.vnode] = search.placed[s].expect("every single stays placed");
    }
    out
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
        let (incident, pair_cost) = (prep.incident(), prep.pair_costs());
        let partners = prep
            .links
            .iter()
            .map(|plan| {
                let mut by_end: [HashMap<usize, Vec<usize>>; 2] = Default::default();
                for pr in &plan.pairs {
                    by_end[0].entry(pr.p).or_default().push(pr.q);
                    by_end[1].entry(pr.q).or_default().push(pr.p);
                }
                by_end
            })
            .collect();
        Self {
            prep,
            incident,
            pair_cost,
            partners,
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
        for (_, j) in self.options(s) {
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

    /// `s` and linked singles around it, breadth first, at most `size`.
    fn neighbourhood(&self, s: usize, size: usize) -> Vec<usize> {
        let mut free = vec![s];
        let mut at = 0;
        while at < free.len() && free.len() < size {
            for &(_, other, _) in &self.incident[free[at]] {
                if free.len() < size && !free.contains(&other) {
                    free.push(other);
                }
            }
            at += 1;
        }
        free
    }

    /// Places the singles in `free` again at least cost, the others fixed; true when it found a cheaper way.
    fn reoptimise(&mut self, free: &[usize]) -> bool {
        let current: Vec<usize> = free.iter().map(|&s| self.placed[s].expect("placed")).collect();
        free.iter().for_each(|&s| self.set(s, None));
        let mut cost = 0.0;
        for (&s, &j) in free.iter().zip(&current) {
            cost += self.step_cost(s, j).expect("the current placement fits");
            self.set(s, Some(j));
        }
        free.iter().for_each(|&s| self.set(s, None));
        let mut best = (cost, current.clone());
        let allowed = (NEIGHBOURHOOD_BUDGET * free.len()).min(self.budget);
        let mut budget = allowed;
        self.cheapest(free, 0, 0.0, &mut best, &mut budget);
        self.budget -= allowed - budget;
        for (&s, &j) in free.iter().zip(&best.1) {
            self.set(s, Some(j));
        }
        best.1 != current
    }

    /// Depth-first branch and bound: the cheapest placement of `order[depth..]` (costs are non-negative, so
    /// a partial placement that already costs as much as the best is cut).
    fn cheapest(
        &mut self,
        order: &[usize],
        depth: usize,
        cost: f64,
        best: &mut (f64, Vec<usize>),
        budget: &mut usize,
    ) {
        let Some(&s) = order.get(depth) else {
            if cost < best.0 - 1e-9 * best.0.max(1.0) {
                *best = (cost, order.iter().map(|&s| self.placed[s].expect("placed")).collect());
            }
            return;
        };
        for (step, j) in self.options(s) {
            if *budget == 0 || cost + step >= best.0 - 1e-9 * best.0.max(1.0) {
                return;
            }
            *budget -= 1;
            self.set(s, Some(j));
            self.cheapest(order, depth + 1, cost + step, best, budget);
            self.set(s, None);
        }
    }

    /// Where single `s` may go now, with the added cost, cheapest first. When a linked single is placed,
    /// only its node's partners on that link can fit: those are the nodes tried (the fewest such).
    fn options(&self, s: usize) -> Vec<(f64, usize)> {
        let none = Vec::new();
        let partners = self.incident[s]
            .iter()
            .filter_map(|&(l, other, is_a)| {
                let at = self.placed[other]?;
                // The other end's partners: indexed by the end the other single is.
                Some(self.partners[l][usize::from(is_a)].get(&at).unwrap_or(&none))
            })
            .min_by_key(|list| list.len());
        let pool = partners.unwrap_or(&self.prep.singles[s].cands);
        let mut options: Vec<(f64, usize)> = pool
            .iter()
            .filter(|&&j| !self.used[j] && self.site_ok(j))
            .filter_map(|&j| self.step_cost(s, j).map(|c| (c, j)))
            .collect();
        options.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        options
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
