//! Node identity: which known node each testbed record is.
//!
//! The testbed has no persistent node identifier: its numeric id, hostname and IP can each change, several at
//! once. Portolan gives every node its own id and, on every sync, matches the testbed's records to the nodes
//! it knows by a **score over the identifying attributes**:
//!
//! | attribute | weight | why |
//! |---|---|---|
//! | SSH host key | 8 | a cryptographic identity: only this machine holds the private half |
//! | hostname | 4 | changes rarely, and mostly by a rename of the same machine |
//! | testbed id | 3 | changes when a node is re-registered |
//! | IP address | 2 | changes with renumbering, and is reused by other machines |
//!
//! A pair scoring at least [`CONFIDENT`] is a match. The **site is the node's role**: a record and a node at
//! different sites never match; when the record's best candidate sits at another site, the record is a new
//! node that *replaces* the old one (which is gone, and nothing allocated to it carries over).
//!
//! The assignment is global: every candidate pair (sharing at least one attribute) is scored, and pairs are
//! taken from the highest score down, in a total order that does not depend on the order records arrive in.
//! Pairs of equal score compete: a record with two candidates at its best score, or a node claimed by two
//! records at one score, is **ambiguous**. So is a record whose best candidate scores below [`CONFIDENT`]
//! (too much changed at once). Ambiguous records are not applied silently: they become held nodes waiting
//! for an operator's decision, with their candidates held too. A known node no record matched is gone.
//!
//! Emulab's portal took the first known node sharing any one attribute, in dictionary order, and mailed an
//! operator when more than two attributes changed; this matcher is deterministic, explains every match with
//! its score and changed attributes, and asks only when the evidence really is ambiguous.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// Weights of the identifying attributes (see the module documentation).
pub const W_HOST_KEY: u32 = 8;
pub const W_HOSTNAME: u32 = 4;
pub const W_TESTBED_ID: u32 = 3;
pub const W_IP: u32 = 2;
/// The least score of a match applied without an operator.
pub const CONFIDENT: u32 = 5;

/// The identifying attributes of a node, as stored or as the testbed lists it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    pub testbed_id: Option<i32>,
    pub hostname: String,
    pub ip: Option<String>,
    pub host_key: Option<String>,
    /// The site's login base: the node's role.
    pub site: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Attr {
    HostKey,
    Hostname,
    TestbedId,
    Ip,
}

impl Attr {
    pub const ALL: [Attr; 4] = [Attr::HostKey, Attr::Hostname, Attr::TestbedId, Attr::Ip];

    pub fn weight(self) -> u32 {
        match self {
            Attr::HostKey => W_HOST_KEY,
            Attr::Hostname => W_HOSTNAME,
            Attr::TestbedId => W_TESTBED_ID,
            Attr::Ip => W_IP,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Attr::HostKey => "host key",
            Attr::Hostname => "hostname",
            Attr::TestbedId => "testbed id",
            Attr::Ip => "IP",
        }
    }

    /// The attribute's comparable value (`None`: not known, never equal to anything).
    fn key(self, id: &Identity) -> Option<String> {
        match self {
            Attr::HostKey => id.host_key.as_deref().and_then(key_material),
            Attr::Hostname => Some(id.hostname.trim().to_ascii_lowercase()).filter(|h| !h.is_empty()),
            Attr::TestbedId => id.testbed_id.map(|i| i.to_string()),
            Attr::Ip => id.ip.as_deref().map(str::trim).filter(|ip| !ip.is_empty()).map(str::to_owned),
        }
    }
}

/// The key type and base64 body of an OpenSSH public key, without its comment.
fn key_material(key: &str) -> Option<String> {
    let mut parts = key.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some(kind), Some(body)) => Some(format!("{kind} {body}")),
        (Some(body), None) => Some(body.to_owned()),
        _ => None,
    }
}

/// The attributes `a` and `b` share, and their score.
pub fn shared(a: &Identity, b: &Identity) -> (u32, Vec<Attr>) {
    let attrs: Vec<Attr> = Attr::ALL
        .into_iter()
        .filter(|attr| matches!((attr.key(a), attr.key(b)), (Some(x), Some(y)) if x == y))
        .collect();
    (attrs.iter().map(|a| a.weight()).sum(), attrs)
}

/// What became of one testbed record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The record is this known node (`changed` empty: nothing identifying changed).
    Matched { node: i64, score: u32, changed: Vec<Attr> },
    /// No known node shares anything with the record: a new node.
    New,
    /// The record's best candidate is at another site: a new node, and that old one is gone.
    Replaced { old: i64, score: u32 },
    /// An operator must decide between these candidates (best first) or call it a new node.
    Ambiguous { candidates: Vec<(i64, u32)>, reason: String },
}

/// The result of matching one sync's records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Matching {
    /// One outcome per record, in the records' order.
    pub outcomes: Vec<Option<Outcome>>,
    /// Known nodes no record matched (ascending), excluding those held as candidates.
    pub unmatched: Vec<i64>,
    /// Known nodes held as candidates of an ambiguous record (ascending).
    pub held: Vec<i64>,
}

/// A scored candidate pair, ordered best first in an order independent of the input's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Pair {
    /// Descending score (stored negated so that ascending order is best first).
    neg_score: i64,
    node: i64,
    /// The record's rank in the order of its own attributes, so that ties between records break the same
    /// way whatever order the records came in.
    record_rank: usize,
    record: usize,
}

/// Every attribute's comparable value, computed once per identity.
type Keys = [Option<String>; 4];

fn keys(id: &Identity) -> Keys {
    Attr::ALL.map(|attr| attr.key(id))
}

fn score_of(a: &Keys, b: &Keys) -> u32 {
    Attr::ALL
        .iter()
        .zip(a.iter().zip(b))
        .filter(|(_, (x, y))| x.is_some() && x == y)
        .map(|(attr, _)| attr.weight())
        .sum()
}

/// Matches `records` to `known` nodes (Portolan id, stored identity). See the module documentation.
pub fn match_records(known: &[(i64, Identity)], records: &[Identity]) -> Matching {
    let known_keys: Vec<Keys> = known.iter().map(|(_, id)| keys(id)).collect();
    let record_keys: Vec<Keys> = records.iter().map(keys).collect();
    let mut index: HashMap<(usize, &str), Vec<usize>> = HashMap::with_capacity(known.len() * 4);
    for (k, ks) in known_keys.iter().enumerate() {
        for (a, v) in ks.iter().enumerate() {
            if let Some(v) = v {
                index.entry((a, v.as_str())).or_default().push(k);
            }
        }
    }
    let mut order: Vec<usize> = (0..records.len()).collect();
    order.sort_by(|&x, &y| {
        (records[x].testbed_id, &record_keys[x], &records[x].site).cmp(&(
            records[y].testbed_id,
            &record_keys[y],
            &records[y].site,
        ))
    });
    let mut rank = vec![0; records.len()];
    for (position, &r) in order.iter().enumerate() {
        rank[r] = position;
    }
    let mut same_site = Vec::new();
    let mut other_site = Vec::new();
    let mut candidates: Vec<usize> = Vec::new();
    for (r, rec) in records.iter().enumerate() {
        candidates.clear();
        for (a, v) in record_keys[r].iter().enumerate() {
            if let Some(v) = v
                && let Some(ks) = index.get(&(a, v.as_str()))
            {
                candidates.extend(ks.iter().copied());
            }
        }
        candidates.sort_unstable();
        candidates.dedup();
        for &k in &candidates {
            let (node, id) = &known[k];
            let score = score_of(&known_keys[k], &record_keys[r]);
            let pair = Pair { neg_score: -i64::from(score), node: *node, record_rank: rank[r], record: r };
            if id.site == rec.site { same_site.push(pair) } else { other_site.push(pair) }
        }
    }
    same_site.sort_unstable();
    other_site.sort_unstable();

    let mut outcomes: Vec<Option<Outcome>> = vec![None; records.len()];
    let mut taken: HashSet<i64> = HashSet::with_capacity(known.len());
    let mut held: BTreeSet<i64> = BTreeSet::new();
    let by_id: HashMap<i64, &Identity> = known.iter().map(|(id, ident)| (*id, ident)).collect();
    let slot: HashMap<i64, usize> = known.iter().enumerate().map(|(k, (id, _))| (*id, k)).collect();

    // Confident pairs, one score at a time.
    let confident: Vec<&Pair> = same_site.iter().filter(|p| -p.neg_score >= i64::from(CONFIDENT)).collect();
    for group in confident.chunk_by(|a, b| a.neg_score == b.neg_score) {
        let open: Vec<&&Pair> = group
            .iter()
            .filter(|p| outcomes[p.record].is_none() && !taken.contains(&p.node) && !held.contains(&p.node))
            .collect();
        let mut per_record: HashMap<usize, Vec<i64>> = HashMap::with_capacity(open.len());
        let mut per_node: HashMap<i64, Vec<usize>> = HashMap::with_capacity(open.len());
        for p in &open {
            per_record.entry(p.record).or_default().push(p.node);
            per_node.entry(p.node).or_default().push(p.record);
        }
        let score = (-group[0].neg_score) as u32;
        for p in &open {
            if outcomes[p.record].is_some() {
                continue;
            }
            let rivals_of_record = &per_record[&p.record];
            let rivals_of_node = &per_node[&p.node];
            if rivals_of_record.len() == 1 && rivals_of_node.len() == 1 {
                let k = slot[&p.node];
                let changed = Attr::ALL
                    .into_iter()
                    .zip(known_keys[k].iter().zip(&record_keys[p.record]))
                    .filter(|(_, (old, new))| old != new)
                    .map(|(attr, _)| attr)
                    .collect();
                outcomes[p.record] = Some(Outcome::Matched { node: p.node, score, changed });
                taken.insert(p.node);
            } else {
                // Every record and node of this tie is ambiguous.
                let mut records_in_tie = BTreeSet::from([p.record]);
                let mut nodes_in_tie = BTreeSet::new();
                let mut frontier = vec![p.record];
                while let Some(r) = frontier.pop() {
                    for n in &per_record[&r] {
                        if nodes_in_tie.insert(*n) {
                            for r2 in &per_node[n] {
                                if records_in_tie.insert(*r2) {
                                    frontier.push(*r2);
                                }
                            }
                        }
                    }
                }
                for r in records_in_tie {
                    let candidates: Vec<(i64, u32)> = per_record[&r].iter().map(|n| (*n, score)).collect();
                    let reason = if candidates.len() > 1 {
                        format!("{} candidates match equally well (score {score})", candidates.len())
                    } else {
                        format!("another record matches this candidate equally well (score {score})")
                    };
                    outcomes[r] = Some(Outcome::Ambiguous { candidates, reason });
                }
                held.extend(nodes_in_tie);
            }
        }
    }

    // Role changes: a record left over whose best candidate at another site is confident and free.
    for p in &other_site {
        let score = (-p.neg_score) as u32;
        if score < CONFIDENT
            || outcomes[p.record].is_some()
            || taken.contains(&p.node)
            || held.contains(&p.node)
        {
            continue;
        }
        // Only if nothing at the record's own site shares anything with it.
        if same_site.iter().any(|q| q.record == p.record) {
            continue;
        }
        outcomes[p.record] = Some(Outcome::Replaced { old: p.node, score });
        taken.insert(p.node);
    }

    // Weak evidence: a record left over that shares something with free nodes at its site.
    let mut weak: BTreeMap<usize, Vec<(i64, u32)>> = BTreeMap::new();
    for p in &same_site {
        if outcomes[p.record].is_none() && !taken.contains(&p.node) {
            weak.entry(p.record).or_default().push((p.node, (-p.neg_score) as u32));
        }
    }
    for (r, candidates) in weak {
        let best = candidates[0].1;
        let shared_attrs: Vec<&str> =
            shared(by_id[&candidates[0].0], &records[r]).1.iter().map(|a| a.as_str()).collect();
        let reason = format!(
            "the best candidate shares only {} (score {best}, below {CONFIDENT}): too much changed at once",
            shared_attrs.join(" and ")
        );
        held.extend(candidates.iter().map(|(n, _)| *n));
        outcomes[r] = Some(Outcome::Ambiguous { candidates, reason });
    }

    for outcome in &mut outcomes {
        if outcome.is_none() {
            *outcome = Some(Outcome::New);
        }
    }
    let unmatched =
        known.iter().map(|(id, _)| *id).filter(|id| !taken.contains(id) && !held.contains(id)).collect();
    Matching { outcomes, unmatched, held: held.into_iter().collect() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(testbed_id: i32, host: &str, ip: &str, key: Option<&str>, site: &str) -> Identity {
        Identity {
            testbed_id: Some(testbed_id),
            hostname: host.to_owned(),
            ip: Some(ip.to_owned()),
            host_key: key.map(str::to_owned),
            site: site.to_owned(),
        }
    }

    fn known() -> Vec<(i64, Identity)> {
        vec![
            (1, id(101, "a.example.edu", "10.0.0.1", Some("ssh-ed25519 AAAA1 c"), "ex")),
            (2, id(102, "b.example.edu", "10.0.0.2", Some("ssh-ed25519 AAAA2"), "ex")),
            (3, id(103, "c.other.org", "10.0.1.3", Some("ssh-ed25519 AAAA3"), "other")),
        ]
    }

    fn matched(m: &Matching, r: usize) -> (i64, Vec<Attr>) {
        match &m.outcomes[r] {
            Some(Outcome::Matched { node, changed, .. }) => (*node, changed.clone()),
            other => panic!("record {r}: {other:?}"),
        }
    }

    #[test]
    fn unchanged_records_match_their_nodes() {
        let k = known();
        let records: Vec<Identity> = k.iter().map(|(_, i)| i.clone()).collect();
        let m = match_records(&k, &records);
        for r in 0..3 {
            assert_eq!(matched(&m, r), (r as i64 + 1, vec![]));
        }
        assert!(m.unmatched.is_empty() && m.held.is_empty());
    }

    #[test]
    fn each_kind_of_change_keeps_the_node() {
        let k = known();
        let cases = [
            (id(999, "a.example.edu", "10.0.0.1", Some("ssh-ed25519 AAAA1"), "ex"), vec![Attr::TestbedId]),
            (id(101, "a2.example.edu", "10.0.0.1", Some("ssh-ed25519 AAAA1"), "ex"), vec![Attr::Hostname]),
            (id(101, "a.example.edu", "10.0.0.9", Some("ssh-ed25519 AAAA1"), "ex"), vec![Attr::Ip]),
            (
                id(999, "a2.example.edu", "10.0.0.1", Some("ssh-ed25519 AAAA1"), "ex"),
                vec![Attr::Hostname, Attr::TestbedId],
            ),
            (
                id(999, "a2.example.edu", "10.0.0.9", Some("ssh-ed25519 AAAA1 new comment"), "ex"),
                vec![Attr::Hostname, Attr::TestbedId, Attr::Ip],
            ),
        ];
        for (record, want) in cases {
            let m = match_records(&k, std::slice::from_ref(&record));
            assert_eq!(matched(&m, 0), (1, want), "{record:?}");
            assert_eq!(m.unmatched, vec![2, 3]);
        }
    }

    #[test]
    fn a_site_change_is_a_new_node_replacing_the_old() {
        let k = known();
        let moved = id(101, "a.example.edu", "10.0.0.1", Some("ssh-ed25519 AAAA1"), "other");
        let m = match_records(&k, &[moved]);
        assert_eq!(m.outcomes[0], Some(Outcome::Replaced { old: 1, score: 17 }));
        assert_eq!(m.unmatched, vec![2, 3]);
    }

    #[test]
    fn too_much_changed_without_a_host_key_waits_for_an_operator() {
        let mut k = known();
        for (_, ident) in &mut k {
            ident.host_key = None;
        }
        // Hostname and id changed, only the IP is left.
        let record = Identity { host_key: None, ..id(999, "z.example.edu", "10.0.0.1", None, "ex") };
        let m = match_records(&k, &[record]);
        match &m.outcomes[0] {
            Some(Outcome::Ambiguous { candidates, reason }) => {
                assert_eq!(candidates, &vec![(1, W_IP)]);
                assert!(reason.contains("IP"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(m.held, vec![1]);
        assert_eq!(m.unmatched, vec![2, 3]);
    }

    #[test]
    fn equal_candidates_are_ambiguous() {
        // Two machines cloned from one image share a host key; a record with that key and nothing else.
        let k = vec![
            (1, id(101, "a.example.edu", "10.0.0.1", Some("ssh-ed25519 CLONE"), "ex")),
            (2, id(102, "b.example.edu", "10.0.0.2", Some("ssh-ed25519 CLONE"), "ex")),
        ];
        let record = id(555, "c.example.edu", "10.0.0.7", Some("ssh-ed25519 CLONE"), "ex");
        let m = match_records(&k, &[record]);
        match &m.outcomes[0] {
            Some(Outcome::Ambiguous { candidates, reason }) => {
                assert_eq!(candidates, &vec![(1, 8), (2, 8)]);
                assert!(reason.contains("equally"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(m.held, vec![1, 2]);
        assert!(m.unmatched.is_empty());
    }

    #[test]
    fn two_records_claiming_one_node_are_both_ambiguous() {
        let k = vec![(1, id(101, "a.example.edu", "10.0.0.1", Some("ssh-ed25519 K1"), "ex"))];
        let records = vec![
            id(201, "x.example.edu", "10.0.0.8", Some("ssh-ed25519 K1"), "ex"),
            id(202, "y.example.edu", "10.0.0.9", Some("ssh-ed25519 K1"), "ex"),
        ];
        let m = match_records(&k, &records);
        assert!(matches!(m.outcomes[0], Some(Outcome::Ambiguous { .. })));
        assert!(matches!(m.outcomes[1], Some(Outcome::Ambiguous { .. })));
        assert_eq!(m.held, vec![1]);
    }

    #[test]
    fn the_answer_does_not_depend_on_record_order() {
        // Two nodes swap IPs and one is renamed: every order gives the same matching.
        let k = known();
        let records = vec![
            id(101, "a.example.edu", "10.0.0.2", Some("ssh-ed25519 AAAA1"), "ex"),
            id(102, "b2.example.edu", "10.0.0.1", Some("ssh-ed25519 AAAA2"), "ex"),
            id(500, "new.example.edu", "10.0.0.5", None, "ex"),
        ];
        let base = match_records(&k, &records);
        let mut reversed = records.clone();
        reversed.reverse();
        let m = match_records(&k, &reversed);
        for r in 0..3 {
            assert_eq!(base.outcomes[r], m.outcomes[2 - r]);
        }
        assert_eq!(base.unmatched, vec![3]);
        assert_eq!(matched(&base, 0).0, 1);
        assert_eq!(matched(&base, 1).0, 2);
        assert_eq!(base.outcomes[2], Some(Outcome::New));
    }
}
