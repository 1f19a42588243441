//! The testbed's mutable state: node identities and health, persons, slices and slivers, and the churn that
//! changes nodes over time. Churn is applied in fixed steps of testbed time, each drawn from the seed and the
//! step number alone, so the state at time `t` depends on the seed and `t`, not on when anyone looked.

use super::{profile::Profile, random, world::World};
use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;

pub const ROLE_ADMIN: i32 = 10;
pub const ROLE_PI: i32 = 20;
pub const ROLE_USER: i32 = 30;

pub fn role_name(role: i32) -> &'static str {
    match role {
        ROLE_ADMIN => "admin",
        ROLE_PI => "pi",
        ROLE_USER => "user",
        _ => "tech",
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NodeState {
    pub node_id: i32,
    pub hostname: String,
    pub ip: Ipv4Addr,
    /// The index of its site in the world's sites (the world's, unless an operator moved it: tests of the
    /// portal's role change do).
    pub site: usize,
    /// Still listed by the testbed.
    pub present: bool,
    /// Booted and answering (`boot`), else `dbg`.
    pub up: bool,
    pub last_change: f64,
    /// Renames so far (keeps new hostnames unique).
    pub renames: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    pub person_id: i32,
    pub email: String,
    /// `None`: the account has no password and cannot authenticate with one.
    pub password: Option<String>,
    pub first_name: String,
    pub last_name: String,
    pub roles: Vec<i32>,
    pub site_ids: Vec<i32>,
    pub key_ids: Vec<i32>,
    pub enabled: bool,
    pub created: f64,
}

impl Person {
    /// An enabled account with no roles, sites or keys yet. An empty password is no password.
    pub fn new(person_id: i32, email: String, password: Option<String>, created: f64) -> Self {
        let password = password.filter(|p| !p.is_empty());
        Self {
            person_id,
            email,
            password,
            first_name: String::new(),
            last_name: String::new(),
            roles: Vec::new(),
            site_ids: Vec::new(),
            key_ids: Vec::new(),
            enabled: true,
            created,
        }
    }

    /// Whether `password` is this account's password: never for an account without one, never for an empty
    /// one.
    pub fn password_matches(&self, password: &str) -> bool {
        use sha2::{Digest, Sha256};
        match &self.password {
            // Compared as digests, so the time taken says nothing about how much of the password matched.
            Some(own) if !password.is_empty() => Sha256::digest(own) == Sha256::digest(password),
            _ => false,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.roles.contains(&ROLE_ADMIN)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Slice {
    pub slice_id: i32,
    pub name: String,
    pub site_id: i32,
    pub description: String,
    pub url: String,
    pub instantiation: String,
    pub max_nodes: i32,
    pub created: f64,
    pub expires: f64,
    pub creator_person_id: i32,
    pub person_ids: Vec<i32>,
    /// Renewals so far (keys the lease-skew draw).
    pub renewals: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sliver {
    /// When it comes up: after a delay on the central path, at once (when `Create` returned) through the node
    /// manager; `None`: never (a failed instantiation).
    pub ready_at: Option<f64>,
    pub running: bool,
}

/// The node table and its indexes are shared (`Arc`), so that readers take a snapshot in O(1) under the lock
/// and build their answers after releasing it; churn copies the table only when it changes something while a
/// snapshot is still out (copy on write).
#[derive(Debug, Default)]
pub struct State {
    pub nodes: Arc<Vec<NodeState>>,
    /// Present nodes by node id and by hostname (rebuilt whenever an identity or presence changes).
    pub by_id: Arc<HashMap<i32, usize>>,
    pub by_host: Arc<HashMap<String, usize>>,
    /// Counts the changes of the node identities and presence (each [`Self::reindex`]): what the sensor feed,
    /// which lists present nodes by name, depends on.
    pub nodes_version: u64,
    pub persons: BTreeMap<i32, Person>,
    pub keys: BTreeMap<i32, (i32, String)>,
    pub sessions: HashMap<String, (i32, f64)>,
    pub slices: BTreeMap<i32, Slice>,
    /// (slice_id, node index) → sliver.
    pub slivers: BTreeMap<(i32, usize), Sliver>,
    /// Tickets delivered to node managers: (slice_id, node index).
    pub tickets: std::collections::BTreeSet<(i32, usize)>,
    /// Synchronous create attempts per (slice_id, node index) (keys the failure draw).
    pub attempts: HashMap<(i32, usize), u64>,
    pub next_id: i32,
    pub next_node_id: i32,
    pub churn_step: u64,
}

impl State {
    pub fn new(world: &World, profile: &Profile, seed: u64, start: f64) -> Self {
        let nodes: Vec<NodeState> = world
            .nodes
            .iter()
            .map(|n| NodeState {
                node_id: n.node_id,
                hostname: n.hostname.clone(),
                ip: n.ip,
                site: n.site,
                present: true,
                up: random::unit(seed, "initially-down", &[n.index as u64]) >= profile.churn.initially_down,
                last_change: start,
                renames: 0,
            })
            .collect();
        let mut state = State {
            next_id: 1,
            next_node_id: world.nodes.iter().map(|n| n.node_id).max().unwrap_or(0) + 1,
            ..State::default()
        };
        state.nodes = Arc::new(nodes);
        state.reindex();
        state
    }

    pub fn reindex(&mut self) {
        self.by_id = Arc::new(
            self.nodes.iter().enumerate().filter(|(_, n)| n.present).map(|(i, n)| (n.node_id, i)).collect(),
        );
        self.by_host = Arc::new(
            self.nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| n.present)
                .map(|(i, n)| (n.hostname.clone(), i))
                .collect(),
        );
        self.nodes_version += 1;
    }

    /// Node `i`, to change (copies the table first if a reader still holds a snapshot of it).
    pub fn node_mut(&mut self, i: usize) -> &mut NodeState {
        &mut Arc::make_mut(&mut self.nodes)[i]
    }

    pub fn fresh_id(&mut self) -> i32 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Applies churn steps up to testbed time `now`, then expires slices.
    pub fn advance(&mut self, world: &World, profile: &Profile, seed: u64, start: f64, now: f64) {
        let step_s = profile.churn.step_s;
        let target = ((now - start) / step_s).floor().max(0.0) as u64;
        while self.churn_step < target {
            self.churn_step += 1;
            self.churn(world, profile, seed, start + self.churn_step as f64 * step_s);
        }
        self.expire(now);
    }

    fn churn(&mut self, world: &World, profile: &Profile, seed: u64, at: f64) {
        let c = &profile.churn;
        let per_step = |rate_per_hour: f64| rate_per_hour * c.step_s / 3600.0;
        let mut changed = false;
        for i in 0..self.nodes.len() {
            let u = random::unit(seed, "churn", &[self.churn_step, i as u64]);
            // Read first, write only on a change: most steps change few nodes, and a write copies the
            // table when a reader holds a snapshot.
            let (present, up) = (self.nodes[i].present, self.nodes[i].up);
            if !present {
                if u < per_step(c.join_per_hour) {
                    let new_id = random::unit(seed, "rejoin-new-id", &[self.churn_step, i as u64]) < 0.5;
                    let next_node_id = self.next_node_id;
                    let node = self.node_mut(i);
                    node.present = true;
                    node.up = true;
                    node.last_change = at;
                    if new_id {
                        node.node_id = next_node_id;
                        self.next_node_id += 1;
                    }
                    changed = true;
                }
                continue;
            }
            if !up {
                if u < per_step(c.up_per_hour) {
                    let node = self.node_mut(i);
                    node.up = true;
                    node.last_change = at;
                }
                continue;
            }
            let (down, leave, ident) =
                (per_step(c.down_per_hour), per_step(c.leave_per_hour), per_step(c.identity_change_per_hour));
            if u < down {
                let node = self.node_mut(i);
                node.up = false;
                node.last_change = at;
            } else if u < down + leave {
                let node = self.node_mut(i);
                node.present = false;
                node.last_change = at;
                self.drop_slivers(i);
                changed = true;
            } else if u < down + leave + ident {
                self.change_identity(world, seed, i, at);
                changed = true;
            }
        }
        if changed {
            self.reindex();
        }
    }

    /// An identity change: a new IP (40%), hostname (30%), node id (20%) or all three (10%).
    fn change_identity(&mut self, world: &World, seed: u64, i: usize, at: f64) {
        let kind = random::unit(seed, "identity-kind", &[self.churn_step, i as u64]);
        let (ip, host, id) = match kind {
            k if k < 0.4 => (true, false, false),
            k if k < 0.7 => (false, true, false),
            k if k < 0.9 => (false, false, true),
            _ => (true, true, true),
        };
        let site_id = world.sites[world.nodes[i].site].site_id as u32;
        let next_node_id = &mut self.next_node_id;
        let node = &mut Arc::make_mut(&mut self.nodes)[i];
        node.last_change = at;
        if ip {
            let base = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + 16 * site_id;
            let old = u32::from(node.ip) - base;
            node.ip = Ipv4Addr::from(base + 8 + (old + 1) % 8);
        }
        if host {
            node.renames += 1;
            let original = &world.nodes[i].hostname;
            let (first, rest) = original.split_once('.').unwrap_or((original, "invalid"));
            node.hostname = format!("{first}-r{}.{rest}", node.renames);
        }
        if id {
            node.node_id = *next_node_id;
            *next_node_id += 1;
            // A re-registered node keeps nothing of its old record.
            self.drop_slivers(i);
        }
    }

    pub fn drop_slivers(&mut self, node: usize) {
        self.slivers.retain(|(_, n), _| *n != node);
        self.tickets.retain(|(_, n)| *n != node);
    }

    /// Expired slices lose their slivers (the record stays, and can be renewed and bound again).
    fn expire(&mut self, now: f64) {
        // Slivers and tickets are keyed by slice first, so each expired slice's are one key range.
        for slice in self.slices.values().filter(|s| s.expires <= now) {
            let range = (slice.slice_id, usize::MIN)..=(slice.slice_id, usize::MAX);
            let slivers: Vec<_> = self.slivers.range(range.clone()).map(|(k, _)| *k).collect();
            for key in slivers {
                self.slivers.remove(&key);
            }
            let tickets: Vec<_> = self.tickets.range(range).copied().collect();
            for key in tickets {
                self.tickets.remove(&key);
            }
        }
    }

    /// Whether the sliver of `slice` on `node` exists on the node at `now` (instantiated, node answering).
    pub fn sliver_ready(&self, slice: i32, node: usize, now: f64) -> bool {
        let Some(sliver) = self.slivers.get(&(slice, node)) else { return false };
        let n = &self.nodes[node];
        n.present && n.up && sliver.ready_at.is_some_and(|t| t <= now)
    }

    /// Ready and not stopped.
    pub fn sliver_up(&self, slice: i32, node: usize, now: f64) -> bool {
        self.sliver_ready(slice, node, now) && self.slivers[&(slice, node)].running
    }

    /// The slices with a sliver on `node` (a scan: for many nodes at once, use [`Self::slices_by_node`]).
    pub fn node_slices(&self, node: usize) -> Vec<i32> {
        self.slivers.keys().filter(|(_, n)| *n == node).map(|(s, _)| *s).collect()
    }

    /// Every node's slices, in one pass over the slivers.
    pub fn slices_by_node(&self) -> HashMap<usize, Vec<i32>> {
        let mut by_node: HashMap<usize, Vec<i32>> = HashMap::new();
        for (slice, node) in self.slivers.keys() {
            by_node.entry(*node).or_default().push(*slice);
        }
        by_node
    }

    /// The SSH keys (OpenSSH text, as their owners gave them) of every member of `slice`, in member then key
    /// order: who may log in to its slivers.
    pub fn member_keys(&self, slice: i32) -> Vec<&str> {
        let Some(slice) = self.slices.get(&slice) else { return Vec::new() };
        slice
            .person_ids
            .iter()
            .filter_map(|p| self.persons.get(p))
            .flat_map(|p| p.key_ids.iter().filter_map(|k| self.keys.get(k)))
            .map(|(_, key)| key.as_str())
            .collect()
    }

    /// The slice called `name`.
    pub fn slice_by_name(&self, name: &str) -> Option<&Slice> {
        self.slices.values().find(|s| s.name == name)
    }

    /// The nodes `slice` has slivers on (slivers are keyed by slice first, so this is a range lookup).
    pub fn slice_nodes(&self, slice: i32) -> Vec<usize> {
        self.slivers.range((slice, 0)..=(slice, usize::MAX)).map(|((_, n), _)| *n).collect()
    }
}
