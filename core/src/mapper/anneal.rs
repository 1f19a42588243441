//! Simulated annealing to a first placement when the depth-first search finds none within its budget.
//!
//! Why: with tight tolerances on a topology with cycles, a depth-first search that commits to cheap nodes
//! early can spend its whole budget under one wrong early choice (on a planted 20-node ring with chords it
//! found nothing in 200,000 steps), while annealing with a penalty per link out of tolerance, as Emulab's
//! `assign` does, reaches a placement with every link in tolerance in a few hundred thousand moves. Only
//! placements with no violated link are kept, so the answer never bends a hard constraint. Seeded and
//! counted in moves, so the same input anneals the same way.

use super::{heuristic, prepare::Prepared};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::{collections::HashMap, time::Instant};

/// Moves the annealing may try.
pub const DEFAULT_MOVES: usize = 400_000;
/// Cost of a link whose ends have no measured path within tolerance.
const PENALTY: f64 = 10.0;

struct State<'p, 'a> {
    prep: &'p Prepared<'a>,
    /// Per single: (link plan, the other single, whether this single is the link's `a` end).
    incident: Vec<Vec<(usize, usize, bool)>>,
    pair_cost: Vec<HashMap<(usize, usize), f64>>,
    /// Per single: its node.
    at: Vec<usize>,
    /// Per world node: the single on it.
    holder: Vec<Option<usize>>,
    site_load: Vec<u32>,
}

/// A placement meeting every hard constraint, or `None` when `moves` (or `deadline`) ran out first.
pub fn anneal(prep: &Prepared, moves: usize, deadline: Instant) -> Option<Vec<usize>> {
    let mut state = State::start(prep)?;
    let mut rng = ChaCha8Rng::seed_from_u64(0x706f_7274);
    let mut violated = state.violations();
    let mut cost = state.cost();
    let mut best: Option<(f64, Vec<usize>)> = (violated == 0).then(|| (cost, state.at.clone()));
    let mut temperature = PENALTY;
    let cooling = (1e-4f64).powf(1.0 / moves.max(1) as f64);
    for step in 0..moves {
        if step % 1024 == 0 && Instant::now() >= deadline {
            break;
        }
        temperature *= cooling;
        let s = rng.random_range(0..prep.singles.len());
        let cands = &prep.singles[s].cands;
        let j = cands[rng.random_range(0..cands.len())];
        let Some((delta, delta_violated)) = state.try_move(s, j) else { continue };
        if delta <= 0.0 || rng.random::<f64>() < (-delta / temperature).exp() {
            state.apply_move(s, j);
            cost += delta;
            violated = violated.checked_add_signed(delta_violated).expect("counted");
            if violated == 0 && best.as_ref().is_none_or(|b| cost < b.0 - 1e-9) {
                best = Some((cost, state.at.clone()));
            }
        }
    }
    heuristic::with_groups(prep, &best?.1)
}

impl<'p, 'a> State<'p, 'a> {
    /// Every single on its cheapest candidate still free (links ignored); `None` if the singles do not fit.
    fn start(prep: &'p Prepared<'a>) -> Option<Self> {
        let (incident, pair_cost) = (prep.incident(), prep.pair_costs());
        let mut state = Self {
            prep,
            incident,
            pair_cost,
            at: Vec::with_capacity(prep.singles.len()),
            holder: vec![None; prep.world.nodes.len()],
            site_load: vec![0; prep.site_count],
        };
        for (s, single) in prep.singles.iter().enumerate() {
            let j = single
                .cands
                .iter()
                .copied()
                .filter(|&j| state.holder[j].is_none() && state.site_room(j))
                .min_by(|&a, &b| prep.node_cost[a].total_cmp(&prep.node_cost[b]).then(a.cmp(&b)))?;
            state.holder[j] = Some(s);
            state.site_load[prep.site_of[j]] += 1;
            state.at.push(j);
        }
        Some(state)
    }

    fn site_room(&self, j: usize) -> bool {
        self.prep.cap.is_none_or(|cap| self.site_load[self.prep.site_of[j]] < cap)
    }

    /// A link's contribution: its pair cost, or the penalty when the pair is not in tolerance.
    fn link_term(&self, l: usize, p: usize, q: usize) -> (f64, bool) {
        self.pair_cost[l].get(&(p, q)).map_or((PENALTY, true), |&c| (c, false))
    }

    fn cost(&self) -> f64 {
        let extra: u32 = self.site_load.iter().map(|c| c.saturating_sub(1)).sum();
        let nodes: f64 = self.at.iter().map(|&j| self.prep.node_cost[j]).sum();
        let links: f64 = (0..self.prep.links.len()).map(|l| self.link_term_of(l).0).sum();
        nodes + self.prep.policy.weights.site_extra * f64::from(extra) + links
    }

    fn violations(&self) -> usize {
        (0..self.prep.links.len()).filter(|&l| self.link_term_of(l).1).count()
    }

    fn link_term_of(&self, l: usize) -> (f64, bool) {
        let plan = &self.prep.links[l];
        self.link_term(l, self.at[plan.u], self.at[plan.v])
    }

    /// The links' cost and violations around `movers`, with the singles where they are now.
    fn around(&self, movers: &[usize]) -> (f64, isize) {
        let mut seen: Vec<usize> =
            movers.iter().flat_map(|&s| self.incident[s].iter().map(|i| i.0)).collect();
        seen.sort_unstable();
        seen.dedup();
        seen.iter().fold((0.0, 0), |(c, v), &l| {
            let (cost, bad) = self.link_term_of(l);
            (c + cost, v + isize::from(bad))
        })
    }

    /// The change in cost and violations if `s` moved to `j` (swapping with the single there, if any);
    /// `None` when the move is not allowed (a group's node, a full site, a swap partner that cannot go back).
    fn try_move(&mut self, s: usize, j: usize) -> Option<(f64, isize)> {
        let from = self.at[s];
        if from == j {
            return None;
        }
        let other = self.holder[j];
        if let Some(o) = other
            && self.prep.singles[o].cands.binary_search(&from).is_err()
        {
            return None;
        }
        let (site_from, site_to) = (self.prep.site_of[from], self.prep.site_of[j]);
        if other.is_none() && site_from != site_to && !self.site_room(j) {
            return None;
        }
        let movers: Vec<usize> = std::iter::once(s).chain(other).collect();
        let (links_before, bad_before) = self.around(&movers);
        self.apply_move(s, j);
        let (links_after, bad_after) = self.around(&movers);
        self.apply_move(s, from);
        let extra = self.prep.policy.weights.site_extra;
        let sites = if other.is_some() || site_from == site_to {
            0.0
        } else {
            let freed = if self.site_load[site_from] >= 2 { -extra } else { 0.0 };
            let joined = if self.site_load[site_to] >= 1 { extra } else { 0.0 };
            freed + joined
        };
        let nodes = if other.is_some() { 0.0 } else { self.prep.node_cost[j] - self.prep.node_cost[from] };
        Some((nodes + sites + links_after - links_before, bad_after - bad_before))
    }

    /// Moves `s` to `j`, swapping with the single there, if any.
    fn apply_move(&mut self, s: usize, j: usize) {
        let from = self.at[s];
        match self.holder[j] {
            Some(o) => {
                self.at[o] = from;
                self.holder[from] = Some(o);
            }
            None => {
                self.holder[from] = None;
                self.site_load[self.prep.site_of[from]] -= 1;
                self.site_load[self.prep.site_of[j]] += 1;
            }
        }
        self.at[s] = j;
        self.holder[j] = Some(s);
    }
}
