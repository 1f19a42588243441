//! Narrows the candidate sets of linked virtual nodes before the model is built, by two exact tests per
//! (virtual node, candidate node): put the virtual node there and propagate the links (arc consistency,
//! one node per sliver); drop the candidate when some other virtual node is left without a candidate
//! (singleton arc consistency), or when a lower bound on every placement that uses it exceeds the cost of a
//! placement already known (the warm start).
//!
//! Why: a virtual node can sit fractionally on many nodes whose pairs each fit one link but that no
//! integer placement can combine, and every such node is a column the solver carries. On a planted 20-node
//! ring with chords (1 ms tolerances on short links: 65,000 pair columns) HiGHS ended 30 s at a 32 % gap,
//! its bound close to the optimum but its best placement far from it. Latency tolerances around a cycle
//! leave few consistent candidates: propagation removes many exactly, and the bound test removes most of
//! the rest once a good placement is known, so the solver searches a much smaller model.
//!
//! Both tests only remove candidates that are in no placement, or in none cheaper than the known one, so the
//! solver's bound on the narrowed model is a bound on the original. The work is counted in bitset words and
//! bounded by a budget, so the same input narrows the same way on any machine; a deadline stops it early
//! only when the machine is much slower than the budget assumes (what was removed until then stays valid).

use super::{
    answer::{ConstraintClass, Explanation},
    prepare::Prepared,
};
use fixedbitset::FixedBitSet;
use std::time::Instant;

/// Bitset words (64 candidates each) the tests may touch: about 3 s on the bench machine, several times
/// what the bench's link instances need (each narrowing pass there ends within 0.5 s).
pub const DEFAULT_BUDGET: u64 = 1_500_000_000;
/// Above this many support bits (2 × links × candidates²) the tests are skipped: 32 MiB, which allows 30
/// links over 2,000 candidate nodes (the real PlanetLab world has 490 with measured paths).
const MAX_SUPPORT_BITS: usize = 1 << 28;

/// What narrowing did, for the answer's statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Narrowed {
    /// Candidates removed because no placement uses them.
    pub inconsistent: usize,
    /// Candidates removed because every placement using them costs more than the warm start.
    pub too_costly: usize,
    /// Whether every candidate was tested until nothing changed (false: budget, deadline or size).
    pub complete: bool,
    /// A lower bound on the objective of every placement (see [`Net::bound`]), when narrowing ran.
    pub bound: Option<f64>,
}

/// One direction of a constrained link, from the end whose candidates are indexed.
struct Side {
    /// Per local candidate of this end: the other end's local candidates that fit.
    support: Vec<FixedBitSet>,
    /// Per local candidate of this end: (pair cost, other local candidate), cheapest first.
    by_cost: Vec<Vec<(f64, usize)>>,
}

/// The propagation state shared by every test.
struct Net {
    /// Per single: (link plan, the other single, this single's side: 0 for the link's `a` end, 1 for `b`).
    incident: Vec<Vec<(usize, usize, usize)>>,
    /// Per link plan: the side indexed by `u`'s candidates, then the one indexed by `v`'s.
    sides: Vec<[Side; 2]>,
    /// Local candidate → node cost.
    cost: Vec<f64>,
    /// A lower bound on the cost of the grouped virtual nodes (cheapest candidates, conflicts ignored).
    groups_bound: f64,
    work: u64,
    budget: u64,
    deadline: Instant,
}

/// Narrows `prep`'s singles and link pairs in place. `incumbent` is the objective of a known placement
/// (the bound test is skipped without one). An `Err` proves that no placement exists.
pub fn narrow(
    prep: &mut Prepared,
    incumbent: Option<f64>,
    budget: u64,
    deadline: Instant,
) -> Result<Narrowed, Vec<Explanation>> {
    if prep.links.is_empty() {
        return Ok(Narrowed { complete: true, ..Narrowed::default() });
    }
    let mut local = vec![usize::MAX; prep.world.nodes.len()];
    let mut nodes = Vec::new();
    for single in &prep.singles {
        for &j in &single.cands {
            if local[j] == usize::MAX {
                local[j] = nodes.len();
                nodes.push(j);
            }
        }
    }
    let m = nodes.len();
    if prep.links.len().saturating_mul(2).saturating_mul(m).saturating_mul(m) > MAX_SUPPORT_BITS {
        return Ok(Narrowed::default());
    }
    let mut net = Net::new(prep, &local, &nodes, budget, deadline);
    let mut dom: Vec<FixedBitSet> = prep
        .singles
        .iter()
        .map(|s| {
            let mut d = FixedBitSet::with_capacity(m);
            s.cands.iter().for_each(|&j| d.insert(local[j]));
            d
        })
        .collect();
    let all: Vec<usize> = (0..dom.len()).collect();
    if let Err(wiped) = net.propagate(&mut dom, &all) {
        return Err(vec![no_candidate_left(prep, wiped)]);
    }
    let mut outcome = Narrowed::default();
    outcome.complete = net
        .singleton_tests(&mut dom, incumbent, &mut outcome)
        .map_err(|wiped| vec![no_candidate_left(prep, wiped)])?;
    outcome.bound = Some(net.bound(&dom));
    apply(prep, &dom, &local);
    Ok(outcome)
}

fn no_candidate_left(prep: &Prepared, single: usize) -> Explanation {
    let name = &prep.topo.nodes[prep.singles[single].vnode].name;
    Explanation {
        class: ConstraintClass::Combination,
        message: format!(
            "every link alone has fitting node pairs, but no node for {name} fits all the links around it \
             at once (checked by propagating the tolerances through the topology): relax a tolerance on a \
             cycle through {name}"
        ),
    }
}

/// Keeps the candidates left in `dom`, and the pairs between them.
fn apply(prep: &mut Prepared, dom: &[FixedBitSet], local: &[usize]) {
    for (single, d) in prep.singles.iter_mut().zip(dom) {
        single.cands.retain(|&j| d.contains(local[j]));
    }
    for plan in &mut prep.links {
        let (du, dv) = (&dom[plan.u], &dom[plan.v]);
        plan.pairs.retain(|pr| du.contains(local[pr.p]) && dv.contains(local[pr.q]));
    }
}

impl Net {
    fn new(prep: &Prepared, local: &[usize], nodes: &[usize], budget: u64, deadline: Instant) -> Self {
        let m = nodes.len();
        let incident = prep
            .incident()
            .into_iter()
            .map(|list| list.into_iter().map(|(l, other, is_a)| (l, other, usize::from(!is_a))).collect())
            .collect();
        let mut sides = Vec::with_capacity(prep.links.len());
        for plan in &prep.links {
            let empty =
                || Side { support: vec![FixedBitSet::with_capacity(m); m], by_cost: vec![Vec::new(); m] };
            let (mut from_u, mut from_v) = (empty(), empty());
            for pr in &plan.pairs {
                let (p, q) = (local[pr.p], local[pr.q]);
                from_u.support[p].insert(q);
                from_u.by_cost[p].push((pr.cost, q));
                from_v.support[q].insert(p);
                from_v.by_cost[q].push((pr.cost, p));
            }
            for side in [&mut from_u, &mut from_v] {
                side.by_cost
                    .iter_mut()
                    .for_each(|list| list.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1))));
            }
            sides.push([from_u, from_v]);
        }
        let cost = nodes.iter().map(|&j| prep.node_cost[j]).collect();
        let groups_bound = prep
            .groups
            .iter()
            .map(|g| {
                let mut costs: Vec<f64> = g.cands.iter().map(|&j| prep.node_cost[j]).collect();
                costs.sort_by(f64::total_cmp);
                costs.iter().take(g.members.len()).sum::<f64>()
            })
            .sum();
        Self { incident, sides, cost, groups_bound, work: 0, budget, deadline }
    }

    fn words(dom: &FixedBitSet) -> u64 {
        dom.len().div_ceil(64) as u64
    }

    /// Arc consistency over the links, plus "one sliver per node" for virtual nodes down to one candidate,
    /// starting from the singles in `changed`. `Err` names a single left without candidates.
    fn propagate(&mut self, dom: &mut [FixedBitSet], changed: &[usize]) -> Result<(), usize> {
        let mut queued = vec![false; dom.len()];
        let mut queue: Vec<usize> = Vec::new();
        for &s in changed {
            queued[s] = true;
            queue.push(s);
        }
        // Singles down to one candidate whose node the others have not given up yet.
        let mut newly_fixed: Vec<usize> =
            changed.iter().copied().filter(|&s| dom[s].count_ones(..) == 1).collect();
        while let Some(s) = queue.pop() {
            queued[s] = false;
            for k in 0..self.incident[s].len() {
                let (l, other, own) = self.incident[s][k];
                let (d_s, d_o) = two(dom, s, other);
                let (size_s, before) = (d_s.count_ones(..), d_o.count_ones(..));
                self.work += Self::words(d_s) * size_s.min(before) as u64;
                if size_s <= before {
                    // The other end keeps the candidates some candidate of this single supports.
                    let mut reach = FixedBitSet::with_capacity(d_o.len());
                    d_s.ones().for_each(|c| reach.union_with(&self.sides[l][own].support[c]));
                    d_o.intersect_with(&reach);
                } else {
                    // The other end keeps the candidates with a supporting candidate of this single.
                    let support = &self.sides[l][1 - own].support;
                    let lost: Vec<usize> = d_o.ones().filter(|&c| support[c].is_disjoint(d_s)).collect();
                    lost.iter().for_each(|&c| d_o.set(c, false));
                }
                match d_o.count_ones(..) {
                    0 => return Err(other),
                    after if after == before => continue,
                    1 => newly_fixed.push(other),
                    _ => {}
                }
                if !queued[other] {
                    queued[other] = true;
                    queue.push(other);
                }
            }
            // One sliver per node: a single down to one candidate takes it from every other single.
            while let Some(t) = newly_fixed.pop() {
                let Some(c) = dom[t].ones().next() else { continue };
                for o in (0..dom.len()).filter(|&o| o != t) {
                    if !dom[o].contains(c) {
                        continue;
                    }
                    dom[o].set(c, false);
                    match dom[o].count_ones(..) {
                        0 => return Err(o),
                        1 => newly_fixed.push(o),
                        _ => {}
                    }
                    if !queued[o] {
                        queued[o] = true;
                        queue.push(o);
                    }
                }
                self.work += dom.len() as u64;
            }
        }
        Ok(())
    }

    /// A lower bound on every placement within `dom`: per single the cheapest candidate counting its node
    /// cost and half of each incident link's cheapest fitting pair, plus the groups' bound.
    fn bound(&mut self, dom: &[FixedBitSet]) -> f64 {
        let mut total = self.groups_bound;
        for (s, d) in dom.iter().enumerate() {
            let mut best = f64::INFINITY;
            for c in d.ones() {
                let mut value = self.cost[c];
                for &(l, other, own) in &self.incident[s] {
                    let side = &self.sides[l][own];
                    let list = &side.by_cost[c];
                    let at = list.iter().position(|&(_, o)| dom[other].contains(o));
                    self.work += at.map_or(list.len(), |a| a + 1) as u64 / 8 + 1;
                    value += at.map_or(f64::INFINITY, |a| list[a].0 / 2.0);
                }
                best = best.min(value);
            }
            total += best;
        }
        total
    }

    fn out_of_time(&self) -> bool {
        self.work > self.budget || Instant::now() >= self.deadline
    }

    /// Tests every candidate of every single, until a round removes nothing. `Ok(true)` when it got there.
    fn singleton_tests(
        &mut self,
        dom: &mut [FixedBitSet],
        incumbent: Option<f64>,
        outcome: &mut Narrowed,
    ) -> Result<bool, usize> {
        let mut test = dom.to_vec();
        loop {
            let mut changed = false;
            for s in 0..dom.len() {
                let cands: Vec<usize> = dom[s].ones().collect();
                for c in cands {
                    if !dom[s].contains(c) {
                        continue;
                    }
                    if self.out_of_time() {
                        return Ok(false);
                    }
                    test.clone_from_slice(dom);
                    test[s].clear();
                    test[s].insert(c);
                    let consistent = self.propagate(&mut test, &[s]).is_ok();
                    let costly = consistent
                        && incumbent.is_some_and(|ub| self.bound(&test) > ub + 1e-9 * ub.abs().max(1.0));
                    if consistent && !costly {
                        continue;
                    }
                    if consistent {
                        outcome.too_costly += 1;
                    } else {
                        outcome.inconsistent += 1;
                    }
                    dom[s].set(c, false);
                    if dom[s].is_clear() {
                        return Err(s);
                    }
                    self.propagate(dom, &[s])?;
                    changed = true;
                }
            }
            if !changed {
                return Ok(true);
            }
        }
    }
}

/// Mutable access to two different domains.
fn two(dom: &mut [FixedBitSet], a: usize, b: usize) -> (&FixedBitSet, &mut FixedBitSet) {
    assert_ne!(a, b, "a link joins two different singles");
    if a < b {
        let (left, right) = dom.split_at_mut(b);
        (&left[a], &mut right[0])
    } else {
        let (left, right) = dom.split_at_mut(a);
        (&right[0], &mut left[b])
    }
}
