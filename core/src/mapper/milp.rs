//! The MILP, built with good_lp and solved by HiGHS.
//!
//! Variables: one binary per (group, candidate node) and per (single virtual node, candidate node); one
//! continuous pair variable per pruned candidate node pair of each constrained link, tied to its ends'
//! placements by equalities (Σ_q z_pq = x_up for every p, Σ_p z_pq = x_vq for every q), which makes the pair
//! variables integral without declaring them so; one continuous site-excess variable per site for the
//! spread penalty. Rows: group sizes, one per single, node capacity (one sliver per node), site caps, the
//! link equalities, and lexicographic order between twin virtual nodes (same type, same constrained links)
//! to break their symmetry. good_lp builds the model; we then take the HiGHS model out of it
//! (`into_inner`) so we can warm-start it, bound its time and read the MIP gap and dual bound, which good_lp
//! does not report.

use super::{
    answer::Status,
    prepare::{Prepared, Single},
};
use good_lp::{Constraint, Expression, ProblemVariables, SolverModel, Variable, highs, variable};
use highs::{HighsModelStatus, HighsSolutionStatus};
use model::error::{AppError, AppResult};
use std::{
    collections::{BTreeMap, HashMap},
    time::Instant,
};

/// What a model column stands for.
#[derive(Clone, Copy, Debug)]
enum Column {
    Group { g: usize, j: usize },
    Single { s: usize, j: usize },
    Excess { site: usize },
    Pair { l: usize, k: usize },
}

pub struct Solved {
    pub status: Status,
    pub placement: Option<Vec<usize>>,
    /// HiGHS's dual bound (at least 0: every objective term is non-negative).
    pub bound: f64,
    pub variables: usize,
    pub constraints: usize,
}

struct Builder {
    vars: ProblemVariables,
    columns: Vec<Column>,
    objective: Expression,
    rows: Vec<Constraint>,
    /// Variables that put a sliver on each world node.
    at_node: Vec<Vec<Variable>>,
    /// Per single: candidate world node → its variable.
    x: Vec<HashMap<usize, Variable>>,
}

impl Builder {
    fn add(&mut self, column: Column, binary: bool, cost: f64) -> Variable {
        let def = match column {
            _ if binary => variable().binary(),
            // A site's excess is its node count minus one: unbounded above, or it would cap every site at 2.
            Column::Excess { .. } => variable().min(0.0),
            _ => variable().min(0.0).max(1.0),
        };
        let var = self.vars.add(def);
        self.columns.push(column);
        if cost != 0.0 {
            self.objective.add_mul(cost, var);
        }
        var
    }
}

/// HiGHS's `presolve_rule_off` bits: probing and enumeration.
const PRESOLVE_PROBING: i32 = 1 << 15;
const PRESOLVE_ENUMERATION: i32 = 1 << 16;
/// Above this many columns per second of time left, presolve's enumeration would eat the time limit.
const PRESOLVE_COLUMNS_PER_S: f64 = 10_000.0;

/// Seconds left until `deadline` (at least 1 ms: HiGHS needs a positive limit).
fn left(deadline: Instant) -> f64 {
    deadline.saturating_duration_since(Instant::now()).as_secs_f64().max(0.001)
}

/// Builds and solves the model for `prep`, warm-started from `warm`, stopping at `deadline`.
pub fn solve(prep: &Prepared, warm: Option<&[usize]>, deadline: Instant) -> AppResult<Solved> {
    let mut b = Builder {
        vars: ProblemVariables::new(),
        columns: Vec::new(),
        objective: Expression::default(),
        rows: Vec::new(),
        at_node: vec![Vec::new(); prep.world.nodes.len()],
        x: Vec::new(),
    };
    add_placement_vars(prep, &mut b);
    add_capacity_and_sites(prep, &mut b);
    add_links(prep, &mut b);
    add_symmetry_breaking(prep, &mut b);
    let initial = warm.map(|placement| initial_values(prep, &b, placement));
    let (variables, constraints) = (b.columns.len(), b.rows.len());
    let mut problem = b.vars.minimise(b.objective).using(highs);
    for row in b.rows {
        problem.add_constraint(row);
    }
    let mut model = problem.try_into_inner().map_err(AppError::internal)?;
    model.make_quiet();
    model.try_set_option("random_seed", 0).map_err(|_| AppError::internal("random_seed"))?;
    // HiGHS does not stop inside a presolve pass: measured on the mapper bench, presolve ran 4.5 s under a
    // 1.4 s limit (10 v / 15 links, 48,000 columns). Probing is the slowest pass on link models and mostly
    // does not pay for itself (20 v / 30 links: 3.7 s → 0.3 s to optimal; 10 v / 15 links: 12 s → 5 s;
    // one instance of four ended with a wider gap without it): always off. Enumeration pays on long runs
    // but takes seconds on models of ~50,000 columns: off when the model has more than
    // PRESOLVE_COLUMNS_PER_S columns per second of time left.
    let mut rules_off = PRESOLVE_PROBING;
    if variables as f64 > PRESOLVE_COLUMNS_PER_S * left(deadline) {
        rules_off |= PRESOLVE_ENUMERATION;
    }
    model
        .try_set_option("presolve_rule_off", rules_off)
        .map_err(|_| AppError::internal("presolve_rule_off"))?;
    if let Some(values) = &initial {
        model
            .try_set_solution(Some(values), None, None, None)
            .map_err(|e| AppError::internal(format!("{e:?}")))?;
    }
    // The time limit runs from now: building and loading the model took part of the budget.
    model.try_set_option("time_limit", left(deadline)).map_err(|_| AppError::internal("time_limit"))?;
    let solved = model.try_solve().map_err(|e| AppError::internal(format!("HiGHS: {e:?}")))?;
    let found = solved.primal_solution_status() == HighsSolutionStatus::Feasible;
    let status = match solved.status() {
        HighsModelStatus::Optimal | HighsModelStatus::ObjectiveBound | HighsModelStatus::ObjectiveTarget => {
            Status::Optimal
        }
        HighsModelStatus::Infeasible | HighsModelStatus::UnboundedOrInfeasible => Status::Infeasible,
        HighsModelStatus::ReachedTimeLimit
        | HighsModelStatus::ReachedIterationLimit
        | HighsModelStatus::ReachedSolutionLimit
        | HighsModelStatus::ReachedInterrupt
        | HighsModelStatus::ReachedMemoryLimit => {
            if found {
                Status::Feasible
            } else {
                Status::Unknown
            }
        }
        other => return Err(AppError::internal(format!("HiGHS ended with status {other:?}"))),
    };
    let placement = (found && status != Status::Infeasible)
        .then(|| decode(prep, &b.columns, solved.get_solution().columns()));
    // Every objective term is non-negative, so 0 is a valid bound when HiGHS has none yet (stopped before
    // the root relaxation was solved) or a negative one (its presolved objective can carry an offset).
    let raw_bound = solved.double_info_value(c"mip_dual_bound").ok().filter(|b| b.is_finite());
    let bound = raw_bound.unwrap_or(0.0).max(0.0);
    Ok(Solved { status, placement, bound, variables, constraints })
}

fn add_placement_vars(prep: &Prepared, b: &mut Builder) {
    for (g, group) in prep.groups.iter().enumerate() {
        let mut size = Expression::default();
        for &j in &group.cands {
            let var = b.add(Column::Group { g, j }, true, prep.node_cost[j]);
            size.add_mul(1.0, var);
            b.at_node[j].push(var);
        }
        b.rows.push(size.eq(group.members.len() as f64));
    }
    for (s, single) in prep.singles.iter().enumerate() {
        let mut one = Expression::default();
        let mut x = HashMap::new();
        for &j in &single.cands {
            let var = b.add(Column::Single { s, j }, true, prep.node_cost[j]);
            one.add_mul(1.0, var);
            b.at_node[j].push(var);
            x.insert(j, var);
        }
        b.rows.push(one.eq(1.0));
        b.x.push(x);
    }
}

fn sum(vars: &[Variable]) -> Expression {
    let mut e = Expression::with_capacity(vars.len());
    vars.iter().for_each(|&v| e.add_mul(1.0, v));
    e
}

fn add_capacity_and_sites(prep: &Prepared, b: &mut Builder) {
    let mut site_vars: Vec<Vec<Variable>> = vec![Vec::new(); prep.site_count];
    let mut site_nodes = vec![0u32; prep.site_count];
    for (j, vars) in b.at_node.iter().enumerate().filter(|(_, v)| !v.is_empty()) {
        if vars.len() > 1 {
            b.rows.push(sum(vars).leq(1.0));
        }
        site_vars[prep.site_of[j]].extend(vars);
        site_nodes[prep.site_of[j]] += 1;
    }
    let spread = prep.policy.weights.site_extra;
    for (s, vars) in site_vars.iter().enumerate() {
        if let Some(cap) = prep.cap
            && site_nodes[s] > cap
        {
            b.rows.push(sum(vars).leq(f64::from(cap)));
        }
        if spread > 0.0 && prep.cap != Some(1) && site_nodes[s] > 1 {
            let excess = b.add(Column::Excess { site: s }, false, spread);
            b.rows.push((sum(vars) - excess).leq(1.0));
        }
    }
}

fn add_links(prep: &Prepared, b: &mut Builder) {
    for (l, plan) in prep.links.iter().enumerate() {
        let mut out_of: BTreeMap<usize, Expression> = BTreeMap::new();
        let mut into: BTreeMap<usize, Expression> = BTreeMap::new();
        for (k, pair) in plan.pairs.iter().enumerate() {
            let z = b.add(Column::Pair { l, k }, false, pair.cost);
            out_of.entry(pair.p).or_default().add_mul(1.0, z);
            into.entry(pair.q).or_default().add_mul(1.0, z);
        }
        for (end, sums) in [(plan.u, out_of), (plan.v, into)] {
            for (j, total) in sums {
                b.rows.push((total - b.x[end][&j]).eq(0.0));
            }
        }
    }
}

/// Twin singles (same type, not fixed, identical constrained links to the same neighbours) are
/// interchangeable: order them by the index of their node.
fn add_symmetry_breaking(prep: &Prepared, b: &mut Builder) {
    let mut classes: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (s, single) in prep.singles.iter().enumerate() {
        if prep.fixed[single.vnode].is_none() {
            classes.entry(signature(prep, single)).or_default().push(s);
        }
    }
    for twins in classes.values().filter(|t| t.len() > 1) {
        for w in twins.windows(2) {
            let index_of = |s: usize| {
                let mut e = Expression::default();
                prep.singles[s].cands.iter().for_each(|&j| e.add_mul(j as f64, b.x[s][&j]));
                e
            };
            b.rows.push((index_of(w[0]) - index_of(w[1])).leq(-1.0));
        }
    }
}

fn signature(prep: &Prepared, single: &Single) -> String {
    let name = &prep.topo.nodes[single.vnode].name;
    let mut links: Vec<String> = prep
        .topo
        .links
        .iter()
        .filter(|l| l.has_targets() && (&l.a == name || &l.b == name))
        .map(|l| {
            let other = if &l.a == name { &l.b } else { &l.a };
            format!("{other}:{:?}:{:?}:{:?}:{:?}", l.latency, l.bandwidth, l.loss, l.weights)
        })
        .collect();
    links.sort();
    format!("{:?}|{}", prep.topo.nodes[single.vnode].node_type, links.join("|"))
}

/// Column values of a placement, for the warm start: the MILP's own variables, pair and excess included.
fn initial_values(prep: &Prepared, b: &Builder, placement: &[usize]) -> Vec<f64> {
    let mut per_site = vec![0u32; prep.site_count];
    placement.iter().for_each(|&j| per_site[prep.site_of[j]] += 1);
    let ends: Vec<(usize, usize)> = prep
        .links
        .iter()
        .map(|plan| (placement[prep.singles[plan.u].vnode], placement[prep.singles[plan.v].vnode]))
        .collect();
    let flag = |b: bool| f64::from(u8::from(b));
    let mut vnode_at = vec![None; prep.world.nodes.len()];
    placement.iter().enumerate().for_each(|(v, &j)| vnode_at[j] = Some(v));
    let mut group_of = vec![None; prep.topo.nodes.len()];
    for (g, group) in prep.groups.iter().enumerate() {
        group.members.iter().for_each(|&m| group_of[m] = Some(g));
    }
    b.columns
        .iter()
        .map(|c| match *c {
            Column::Group { g, j } => flag(vnode_at[j].and_then(|v| group_of[v]) == Some(g)),
            Column::Single { s, j } => flag(placement[prep.singles[s].vnode] == j),
            Column::Excess { site } => f64::from(per_site[site].saturating_sub(1)),
            Column::Pair { l, k } => {
                let pair = prep.links[l].pairs[k];
                flag((pair.p, pair.q) == ends[l])
            }
        })
        .collect()
}

/// The placement a solution encodes; group members take their group's nodes in ascending order.
fn decode(prep: &Prepared, columns: &[Column], values: &[f64]) -> Vec<usize> {
    let mut placement = vec![usize::MAX; prep.topo.nodes.len()];
    let mut group_nodes = vec![Vec::new(); prep.groups.len()];
    for (column, &value) in columns.iter().zip(values) {
        if value > 0.5 {
            match *column {
                Column::Group { g, j } => group_nodes[g].push(j),
                Column::Single { s, j } => placement[prep.singles[s].vnode] = j,
                Column::Excess { .. } | Column::Pair { .. } => {}
            }
        }
    }
    for (group, mut nodes) in prep.groups.iter().zip(group_nodes) {
        nodes.sort_unstable();
        for (&m, j) in group.members.iter().zip(nodes) {
            placement[m] = j;
        }
    }
    placement
}
