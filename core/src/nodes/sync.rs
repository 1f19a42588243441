//! Bringing the database in line with one reading of the testbed's sites and nodes: the write half of
//! discovery, kept apart from the fetching so that it can be tested and measured on its own (records given
//! in any order, the same reading applied twice).
//!
//! Everything is applied in one transaction: a crash mid-way leaves the previous state, and the next pass
//! starts over. Rows are written only where something changed, so an unchanged reading writes nothing but
//! its run record; `last_seen` of a node still listed is refreshed at most every [`SEEN_REFRESH`].

use super::identity::{self, Identity, Outcome};
use crate::db::entity::{NodePool, audit, identity_decision, node, node_event, pool_event, site};
use crate::error::AppResult;
use crate::testbed::{NodeRecord, SiteRecord};
use chrono::{DateTime, TimeDelta, Utc};
use model::topology::LinkClass;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, Set,
    TransactionSession, TransactionTrait,
};
use serde_json::json;
use std::collections::{BTreeSet, HashMap};

/// How stale a listed node's stored `last_seen` may get before an otherwise unchanged sync rewrites it.
pub const SEEN_REFRESH: TimeDelta = TimeDelta::hours(1);

/// Node rows per insert statement (29 values each: under SQLite's 32,766 parameters).
const INSERT_CHUNK: usize = 500;

/// What one sync changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SyncReport {
    pub sites_added: u32,
    pub sites_changed: u32,
    pub sites_gone: u32,
    /// Nodes listed for the first time.
    pub added: u32,
    /// Nodes whose identifying attributes changed (identity events).
    pub identity_changed: u32,
    /// Nodes whose other attributes (boot state, tags, …) changed.
    pub updated: u32,
    /// Nodes no longer listed.
    pub gone: u32,
    /// Gone nodes listed again.
    pub returned: u32,
    /// New nodes that replace an old one after a change of role (site).
    pub replaced: u32,
    /// Records waiting for an operator's decision (new this sync).
    pub held: u32,
    /// Records about nodes at a site the testbed does not list.
    pub skipped: u32,
    /// Node rows written (inserted or updated): 0 for an unchanged reading.
    pub rows_written: u32,
    /// Milliseconds spent loading the stored nodes, matching, and writing (the portal's own part of a cycle).
    #[serde(default)]
    pub load_ms: u32,
    #[serde(default)]
    pub match_ms: u32,
    #[serde(default)]
    pub write_ms: u32,
    /// The testbed's API generation as discovery found it (`node-manager`, `async-only`), if it could tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<String>,
}

impl SyncReport {
    pub fn changed_anything(&self) -> bool {
        self.rows_written > 0
    }
}

/// What discovery reads of a stored node: its identity and the attributes it compares.
#[derive(Clone, Debug, PartialEq, sea_orm::FromQueryResult)]
struct StoredNode {
    id: i64,
    testbed_id: Option<i32>,
    hostname: String,
    ip: Option<String>,
    host_key: Option<String>,
    site_id: i32,
    link_class: String,
    country: Option<String>,
    boot_state: String,
    tags: String,
    cpu_cores: Option<i32>,
    memory_mb: Option<i32>,
    disk_gb: Option<i32>,
    pool: NodePool,
    last_seen: DateTime<Utc>,
    gone_at: Option<DateTime<Utc>>,
    check_failures: i32,
}

/// The node attributes discovery keeps, derived from a record.
#[derive(Clone, Debug, PartialEq)]
struct Attrs {
    testbed_id: Option<i32>,
    hostname: String,
    ip: Option<String>,
    host_key: Option<String>,
    site_id: i32,
    link_class: String,
    country: Option<String>,
    boot_state: String,
    tags: String,
    cpu_cores: Option<i32>,
    memory_mb: Option<i32>,
    disk_gb: Option<i32>,
}

fn attrs_of(record: &NodeRecord, site_id: i32) -> Attrs {
    let tag = |name: &str| record.tags.get(name).cloned();
    let int_tag = |name: &str| tag(name).and_then(|v| v.trim().parse::<i32>().ok());
    let link_class = tag("link_class")
        .filter(|c| LinkClass::ALL.iter().any(|k| k.as_str() == c))
        .unwrap_or_else(|| LinkClass::Commodity.as_str().to_owned());
    Attrs {
        testbed_id: Some(record.node_id),
        hostname: record.hostname.trim().to_owned(),
        ip: record.ip.clone(),
        host_key: record.host_key.clone(),
        site_id,
        link_class,
        country: tag("country"),
        boot_state: record.boot_state.clone(),
        tags: serde_json::to_string(&record.tags).unwrap_or_else(|_| "{}".to_owned()),
        cpu_cores: int_tag("cpu_cores"),
        memory_mb: int_tag("memory_mb"),
        disk_gb: int_tag("disk_gb"),
    }
}

fn stored_attrs(n: &StoredNode) -> Attrs {
    Attrs {
        testbed_id: n.testbed_id,
        hostname: n.hostname.clone(),
        ip: n.ip.clone(),
        host_key: n.host_key.clone(),
        site_id: n.site_id,
        link_class: n.link_class.clone(),
        country: n.country.clone(),
        boot_state: n.boot_state.clone(),
        tags: n.tags.clone(),
        cpu_cores: n.cpu_cores,
        memory_mb: n.memory_mb,
        disk_gb: n.disk_gb,
    }
}

fn identity_json(id: &Identity) -> String {
    serde_json::to_string(id).unwrap_or_else(|_| "{}".to_owned())
}

/// The pool a listed node should be in, given where it was and how many liveness checks in a row it failed.
fn listed_pool(was: NodePool, booted: bool, check_failures: i32) -> NodePool {
    match (was, booted) {
        (_, false) => NodePool::Down,
        // Down because its service sliver failed: it stays down until the liveness loop's re-test passes.
        (NodePool::Down, true) if check_failures > 0 => NodePool::Down,
        // Back from down (not booted) or gone, or released from hold: tested again before it is lent
        // (crate::liveness).
        (NodePool::Down | NodePool::Gone | NodePool::Held, true) => NodePool::New,
        (other, true) => other,
    }
}

/// Why discovery moved a node to `to`.
fn pool_reason(to: NodePool) -> &'static str {
    match to {
        NodePool::Down => "discovery: not booted",
        NodePool::New => "discovery: listed and booted; to be tested",
        NodePool::Gone => "discovery: no longer listed",
        NodePool::Held => "discovery: identity ambiguous, held for an operator",
        NodePool::Free => "discovery",
    }
}

fn pool_change(
    node_id: i64,
    from: NodePool,
    to: NodePool,
    reason: &str,
    at: DateTime<Utc>,
) -> pool_event::ActiveModel {
    pool_event::ActiveModel {
        node_id: Set(node_id),
        at: Set(at),
        from_pool: Set(from),
        to_pool: Set(to),
        reason: Set(reason.to_owned()),
        ..Default::default()
    }
}

pub(super) fn event(
    node_id: i64,
    at: DateTime<Utc>,
    kind: &str,
    score: Option<u32>,
    old: String,
    new: String,
    detail: String,
) -> node_event::ActiveModel {
    node_event::ActiveModel {
        node_id: Set(node_id),
        at: Set(at),
        kind: Set(kind.to_owned()),
        score: Set(score.map(|s| s as i32)),
        old: Set(old),
        new: Set(new),
        detail: Set(detail),
        ..Default::default()
    }
}

/// An event about a node not inserted yet: kind, score, old and new identity (JSON), detail.
type PendingEvent = (String, Option<u32>, String, String, String);

/// A node to insert, its first events, and the identity decision it waits for (candidates JSON, reason).
type NewNode = (node::ActiveModel, Vec<PendingEvent>, Option<(String, String)>);

/// Applies one reading of the testbed (`sites`, `nodes`) at `now`.
pub async fn apply<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    now: DateTime<Utc>,
    sites: &[SiteRecord],
    nodes: &[NodeRecord],
) -> AppResult<SyncReport> {
    let txn = crate::db::begin_writing(db).await?;
    let mut report = SyncReport::default();
    let (site_ids, bases) = apply_sites(&txn, now, sites, &mut report).await?;
    apply_nodes(&txn, now, &site_ids, &bases, nodes, &mut report).await?;
    txn.commit().await?;
    Ok(report)
}

/// Sites: inserted, updated, marked gone. Answers testbed site id → (our id, login base) for the listed
/// sites, and our id → login base for every stored one.
async fn apply_sites(
    txn: &impl ConnectionTrait,
    now: DateTime<Utc>,
    sites: &[SiteRecord],
    report: &mut SyncReport,
) -> AppResult<(HashMap<i32, (i32, String)>, HashMap<i32, String>)> {
    let stored: HashMap<String, site::Model> =
        site::Entity::find().all(txn).await?.into_iter().map(|s| (s.login_base.clone(), s)).collect();
    let mut listed = BTreeSet::new();
    let mut ids = HashMap::with_capacity(sites.len());
    // Listed and unchanged, `last_seen` grown stale: rewritten together.
    let mut stale: Vec<i32> = Vec::new();
    for record in sites {
        let base = record.login_base.trim().to_ascii_lowercase();
        if base.is_empty() || !listed.insert(base.clone()) {
            continue;
        }
        match stored.get(&base) {
            Some(old) => {
                let changed = !(old.testbed_id == record.site_id
                    && old.name == record.name
                    && old.enabled == record.enabled
                    && old.max_slices == record.max_slices
                    && old.latitude == record.latitude
                    && old.longitude == record.longitude
                    && old.present);
                if changed {
                    let mut row: site::ActiveModel = old.clone().into();
                    row.testbed_id = Set(record.site_id);
                    row.name = Set(record.name.clone());
                    row.enabled = Set(record.enabled);
                    row.max_slices = Set(record.max_slices);
                    row.latitude = Set(record.latitude);
                    row.longitude = Set(record.longitude);
                    row.present = Set(true);
                    row.gone_at = Set(None);
                    row.last_seen = Set(now);
                    row.update(txn).await?;
                    report.sites_changed += 1;
                } else if now - old.last_seen >= SEEN_REFRESH {
                    stale.push(old.id);
                }
                ids.insert(record.site_id, (old.id, base));
            }
            None => {
                let row = site::ActiveModel {
                    testbed_id: Set(record.site_id),
                    login_base: Set(base.clone()),
                    name: Set(record.name.clone()),
                    enabled: Set(record.enabled),
                    max_slices: Set(record.max_slices),
                    latitude: Set(record.latitude),
                    longitude: Set(record.longitude),
                    present: Set(true),
                    first_seen: Set(now),
                    last_seen: Set(now),
                    gone_at: Set(None),
                    ..Default::default()
                }
                .insert(txn)
                .await?;
                report.sites_added += 1;
                ids.insert(record.site_id, (row.id, base));
            }
        }
    }
    for old in stored.values().filter(|s| s.present && !listed.contains(&s.login_base)) {
        let mut row: site::ActiveModel = old.clone().into();
        row.present = Set(false);
        row.gone_at = Set(Some(now));
        row.update(txn).await?;
        report.sites_gone += 1;
    }
    for chunk in stale.chunks(ID_CHUNK) {
        site::Entity::update_many()
            .col_expr(site::Column::LastSeen, Expr::value(now))
            .filter(site::Column::Id.is_in(chunk.iter().copied()))
            .exec(txn)
            .await?;
    }
    let mut bases: HashMap<i32, String> = stored.values().map(|s| (s.id, s.login_base.clone())).collect();
    bases.extend(ids.values().map(|(id, base)| (*id, base.clone())));
    Ok((ids, bases))
}

/// The nodes of undecided identity decisions: the held records' own nodes, and all of them with their
/// candidates.
async fn pending_nodes(txn: &impl ConnectionTrait) -> AppResult<(BTreeSet<i64>, BTreeSet<i64>)> {
    let pending = identity_decision::Entity::find()
        .filter(identity_decision::Column::DecidedAt.is_null())
        .all(txn)
        .await?;
    let (mut records, mut all) = (BTreeSet::new(), BTreeSet::new());
    for d in pending {
        records.insert(d.node_id);
        all.insert(d.node_id);
        all.extend(candidate_ids(&d.candidates));
    }
    Ok((records, all))
}

/// The node ids of a decision's stored candidates.
pub fn candidate_ids(candidates: &str) -> Vec<i64> {
    serde_json::from_str::<Vec<serde_json::Value>>(candidates)
        .unwrap_or_default()
        .iter()
        .filter_map(|c| c.get("node_id").and_then(serde_json::Value::as_i64))
        .collect()
}

async fn apply_nodes(
    txn: &impl ConnectionTrait,
    now: DateTime<Utc>,
    site_ids: &HashMap<i32, (i32, String)>,
    stored_site_base: &HashMap<i32, String>,
    records: &[NodeRecord],
    report: &mut SyncReport,
) -> AppResult<()> {
    let started = std::time::Instant::now();
    let stored: Vec<StoredNode> = node::Entity::find()
        .select_only()
        .columns([
            node::Column::Id,
            node::Column::TestbedId,
            node::Column::Hostname,
            node::Column::Ip,
            node::Column::HostKey,
            node::Column::SiteId,
            node::Column::LinkClass,
            node::Column::Country,
            node::Column::BootState,
            node::Column::Tags,
            node::Column::CpuCores,
            node::Column::MemoryMb,
            node::Column::DiskGb,
            node::Column::Pool,
            node::Column::LastSeen,
            node::Column::GoneAt,
            node::Column::CheckFailures,
        ])
        .into_model::<StoredNode>()
        .all(txn)
        .await?;
    // A held record stays held until an operator decides; a held candidate that a record now matches
    // confidently is that record's node again (the decision about it then fails as stale).
    let (pending_records, pending) = pending_nodes(txn).await?;

    let known: Vec<(i64, Identity)> = stored
        .iter()
        .map(|n| {
            let site = stored_site_base.get(&n.site_id).cloned().unwrap_or_default();
            (
                n.id,
                Identity {
                    testbed_id: n.testbed_id,
                    hostname: n.hostname.clone(),
                    ip: n.ip.clone(),
                    host_key: n.host_key.clone(),
                    site,
                },
            )
        })
        .collect();
    let by_id: HashMap<i64, &StoredNode> = stored.iter().map(|n| (n.id, n)).collect();
    let identity_of: HashMap<i64, &Identity> = known.iter().map(|(id, ident)| (*id, ident)).collect();

    // Records at a listed site, once per testbed id (a testbed listing one id twice is a broken answer).
    let mut seen_ids = BTreeSet::new();
    let mut usable: Vec<(&NodeRecord, i32, Identity)> = Vec::with_capacity(records.len());
    for r in records {
        let Some((site_id, base)) = site_ids.get(&r.site_id) else {
            report.skipped += 1;
            continue;
        };
        if !seen_ids.insert(r.node_id) {
            report.skipped += 1;
            continue;
        }
        let ident = Identity {
            testbed_id: Some(r.node_id),
            hostname: r.hostname.trim().to_owned(),
            ip: r.ip.clone(),
            host_key: r.host_key.clone(),
            site: base.clone(),
        };
        usable.push((r, *site_id, ident));
    }
    // In the testbed's id order, so that new nodes get the same Portolan ids whatever order the records
    // came in.
    usable.sort_by(|a, b| (a.0.node_id, &a.2.hostname).cmp(&(b.0.node_id, &b.2.hostname)));
    let identities: Vec<Identity> = usable.iter().map(|(_, _, i)| i.clone()).collect();
    let match_started = std::time::Instant::now();
    let matching = identity::match_records(&known, &identities);

    let mut inserts: Vec<NewNode> = Vec::new();
    let mut events: Vec<node_event::ActiveModel> = Vec::new();
    let mut pool_changes: Vec<pool_event::ActiveModel> = Vec::new();
    let mut audits: Vec<(String, serde_json::Value)> = Vec::new();
    let (mut to_gone, mut to_held): (Vec<i64>, Vec<i64>) = (Vec::new(), Vec::new());
    // Listed and changed: their new attributes, written together after the loop.
    let mut to_update: Vec<Update> = Vec::new();
    // Listed, unchanged, but `last_seen` older than SEEN_REFRESH: one statement for all.
    let mut to_refresh: Vec<i64> = Vec::new();
    let matched_at = std::time::Instant::now();
    report.load_ms = ms(started.elapsed() - (matched_at - match_started));
    report.match_ms = ms(matched_at - match_started);

    for ((record, site_id, ident), outcome) in usable.iter().zip(matching.outcomes.iter()) {
        let attrs = attrs_of(record, *site_id);
        match outcome.as_ref().expect("the matcher answers every record") {
            Outcome::Matched { node: id, score, changed } => {
                let old = by_id[id];
                let was = old.pool;
                let held_here = pending_records.contains(id) && was == NodePool::Held;
                let pool = if held_here {
                    NodePool::Held
                } else {
                    listed_pool(was, record.booted(), old.check_failures)
                };
                if pool != was {
                    pool_changes.push(pool_change(*id, was, pool, pool_reason(pool), now));
                }
                if !changed.is_empty() {
                    let old_ident = identity_of[id];
                    let names: Vec<&str> = changed.iter().map(|a| a.as_str()).collect();
                    let detail = format!("{} changed", names.join(", "));
                    events.push(event(
                        *id,
                        now,
                        "changed",
                        Some(*score),
                        identity_json(old_ident),
                        identity_json(ident),
                        detail.clone(),
                    ));
                    audits.push((
                        format!("node:{id}"),
                        json!({ "old": old_ident, "new": ident, "score": score, "changed": names }),
                    ));
                    report.identity_changed += 1;
                }
                if was == NodePool::Gone {
                    events.push(event(
                        *id,
                        now,
                        "returned",
                        Some(*score),
                        String::new(),
                        identity_json(ident),
                        "listed again".to_owned(),
                    ));
                    report.returned += 1;
                }
                let stored = stored_attrs(old);
                let stale_seen = now - old.last_seen >= SEEN_REFRESH;
                if stored == attrs && pool == was && old.gone_at.is_none() {
                    if stale_seen {
                        to_refresh.push(*id);
                    }
                } else {
                    if stored != attrs && changed.is_empty() && was != NodePool::Gone {
                        report.updated += 1;
                    }
                    let last_contact = record.last_contact.and_then(|t| DateTime::from_timestamp(t, 0));
                    to_update.push((*id, attrs, last_contact, pool));
                }
            }
            Outcome::New => {
                let pool = if record.booted() { NodePool::New } else { NodePool::Down };
                inserts.push((
                    new_row(&attrs, record, pool, now),
                    vec![(
                        "appeared".into(),
                        None,
                        String::new(),
                        identity_json(ident),
                        "first listed".into(),
                    )],
                    None,
                ));
                report.added += 1;
            }
            Outcome::Replaced { old, score } => {
                let pool = if record.booted() { NodePool::New } else { NodePool::Down };
                let old_ident = identity_of[old];
                let detail = format!(
                    "replaces node {old}: its site changed from {} to {}",
                    old_ident.site, ident.site
                );
                inserts.push((
                    new_row(&attrs, record, pool, now),
                    vec![(
                        "appeared".into(),
                        Some(*score),
                        identity_json(old_ident),
                        identity_json(ident),
                        detail,
                    )],
                    None,
                ));
                events.push(event(
                    *old,
                    now,
                    "replaced",
                    Some(*score),
                    identity_json(old_ident),
                    identity_json(ident),
                    format!(
                        "its site changed from {} to {}: listed as a new node",
                        old_ident.site, ident.site
                    ),
                ));
                audits.push((
                    format!("node:{old}"),
                    json!({ "replaced": true, "old": old_ident, "new": ident, "score": score }),
                ));
                to_gone.push(*old);
                report.replaced += 1;
            }
            Outcome::Ambiguous { candidates, reason } => {
                let listed: Vec<serde_json::Value> = candidates
                    .iter()
                    .map(|(n, score)| {
                        let (_, shared) = identity::shared(identity_of[n], ident);
                        json!({ "node_id": n, "score": score, "shared": shared })
                    })
                    .collect();
                let candidates_json = serde_json::Value::Array(listed).to_string();
                inserts.push((
                    new_row(&attrs, record, NodePool::Held, now),
                    vec![(
                        "held".into(),
                        candidates.first().map(|c| c.1),
                        String::new(),
                        identity_json(ident),
                        reason.clone(),
                    )],
                    Some((candidates_json, reason.clone())),
                ));
                report.held += 1;
            }
        }
    }

    // Candidates of new ambiguous records: held.
    for id in &matching.held {
        let old = by_id[id];
        if old.pool != NodePool::Held {
            events.push(event(
                *id,
                now,
                "held",
                None,
                String::new(),
                String::new(),
                "a listed record may be this node: waiting for an operator".to_owned(),
            ));
            to_held.push(*id);
            pool_changes.push(pool_change(*id, old.pool, NodePool::Held, pool_reason(NodePool::Held), now));
        }
    }
    // Nodes no record matched: gone, unless an operator's decision about them is pending.
    for id in &matching.unmatched {
        let old = by_id[id];
        if old.pool == NodePool::Gone || pending.contains(id) {
            continue;
        }
        events.push(event(
            *id,
            now,
            "gone",
            None,
            String::new(),
            String::new(),
            "no longer listed by the testbed".to_owned(),
        ));
        to_gone.push(*id);
        pool_changes.push(pool_change(*id, old.pool, NodePool::Gone, pool_reason(NodePool::Gone), now));
        report.gone += 1;
    }
    report.rows_written += set_pool(txn, &to_gone, NodePool::Gone, now).await?;
    report.rows_written += set_pool(txn, &to_held, NodePool::Held, now).await?;

    // New rows, many per statement, then their events and decisions (which need their ids). A new row is
    // found again by its testbed id, unique among one reading's records.
    for chunk in inserts.chunks(INSERT_CHUNK) {
        let rows: Vec<node::ActiveModel> = chunk.iter().map(|(row, _, _)| row.clone()).collect();
        let inserted = node::Entity::insert_many(rows).exec_with_returning(txn).await?;
        report.rows_written += inserted.len() as u32;
        let ids: HashMap<Option<i32>, i64> = inserted.iter().map(|n| (n.testbed_id, n.id)).collect();
        for (row, new_events, decision) in chunk {
            let id = ids[&row.testbed_id.clone().unwrap()];
            let pool = row.pool.clone().unwrap();
            pool_changes.push(pool_change(id, pool, pool, "discovery: appeared", now));
            for (kind, score, old, new, detail) in new_events {
                events.push(event(id, now, kind, *score, old.clone(), new.clone(), detail.clone()));
            }
            if let Some((candidates, reason)) = decision {
                identity_decision::ActiveModel {
                    node_id: Set(id),
                    candidates: Set(candidates.clone()),
                    reason: Set(reason.clone()),
                    created_at: Set(now),
                    ..Default::default()
                }
                .insert(txn)
                .await?;
            }
        }
    }
    report.rows_written += update_nodes(txn, &to_update, now).await?;
    report.rows_written += refresh_seen(txn, &to_refresh, now).await?;
    for chunk in events.chunks(500) {
        node_event::Entity::insert_many(chunk.to_vec()).exec(txn).await?;
    }
    for chunk in pool_changes.chunks(500) {
        pool_event::Entity::insert_many(chunk.to_vec()).exec(txn).await?;
    }
    let audits: Vec<audit::ActiveModel> = audits
        .into_iter()
        .map(|(target, detail)| audit::ActiveModel {
            at: Set(now),
            actor_id: Set(None),
            action: Set("node.identity".to_owned()),
            target: Set(target),
            detail: Set(detail.to_string()),
            ..Default::default()
        })
        .collect();
    for chunk in audits.chunks(500) {
        audit::Entity::insert_many(chunk.to_vec()).exec(txn).await?;
    }
    report.write_ms = ms(matched_at.elapsed());
    Ok(())
}

fn ms(d: std::time::Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// A listed node's new attributes: id, attributes, last contact, pool.
type Update = (i64, Attrs, Option<DateTime<Utc>>, NodePool);

/// Rows per `UPDATE … FROM (VALUES …)` on PostgreSQL (15 parameters each).
const UPDATE_CHUNK: usize = 200;

/// Writes the changed nodes' attributes (with `last_seen` now, no longer gone). On PostgreSQL in one
/// `UPDATE … FROM (VALUES …)` per chunk (a statement per row cost a millisecond each); on SQLite, which has
/// no round trip, one statement per row.
async fn update_nodes(txn: &impl ConnectionTrait, rows: &[Update], now: DateTime<Utc>) -> AppResult<u32> {
    use sea_orm::{DatabaseBackend, Statement, Value};
    if txn.get_database_backend() != DatabaseBackend::Postgres {
        for (id, attrs, last_contact, pool) in rows {
            let mut row = <node::ActiveModel as Default>::default();
            set_columns(&mut row, attrs, *last_contact);
            row.pool = Set(*pool);
            row.last_seen = Set(now);
            row.gone_at = Set(None);
            row.updated_at = Set(now);
            // Only the columns set here; no row is read back.
            node::Entity::update_many().set(row).filter(node::Column::Id.eq(*id)).exec(txn).await?;
        }
        return Ok(rows.len() as u32);
    }
    const TYPES: [&str; 15] = [
        "BIGINT",
        "INTEGER",
        "TEXT",
        "TEXT",
        "TEXT",
        "INTEGER",
        "TEXT",
        "TEXT",
        "TEXT",
        "TEXT",
        "INTEGER",
        "INTEGER",
        "INTEGER",
        "TIMESTAMPTZ",
        "TEXT",
    ];
    for chunk in rows.chunks(UPDATE_CHUNK) {
        let mut values: Vec<Value> = vec![now.into()];
        let mut tuples = Vec::with_capacity(chunk.len());
        for (id, a, last_contact, pool) in chunk {
            let row: [Value; 15] = [
                (*id).into(),
                a.testbed_id.into(),
                a.hostname.clone().into(),
                a.ip.clone().into(),
                a.host_key.clone().into(),
                a.site_id.into(),
                a.link_class.clone().into(),
                a.country.clone().into(),
                a.boot_state.clone().into(),
                a.tags.clone().into(),
                a.cpu_cores.into(),
                a.memory_mb.into(),
                a.disk_gb.into(),
                (*last_contact).into(),
                pool.as_str().into(),
            ];
            let cells: Vec<String> = row
                .into_iter()
                .zip(TYPES)
                .map(|(v, t)| {
                    values.push(v);
                    format!("CAST(${} AS {t})", values.len())
                })
                .collect();
            tuples.push(format!("({})", cells.join(", ")));
        }
        let sql = format!(
            "UPDATE nodes SET testbed_id = v.testbed_id, hostname = v.hostname, ip = v.ip, host_key = v.host_key, \
             site_id = v.site_id, link_class = v.link_class, country = v.country, boot_state = v.boot_state, \
             tags = v.tags, cpu_cores = v.cpu_cores, memory_mb = v.memory_mb, disk_gb = v.disk_gb, \
             last_contact = v.last_contact, pool = v.pool, last_seen = $1, gone_at = NULL, updated_at = $1 \
             FROM (VALUES {}) AS v(id, testbed_id, hostname, ip, host_key, site_id, link_class, country, \
             boot_state, tags, cpu_cores, memory_mb, disk_gb, last_contact, pool) WHERE nodes.id = v.id",
            tuples.join(", ")
        );
        txn.execute_raw(Statement::from_sql_and_values(DatabaseBackend::Postgres, sql, values)).await?;
    }
    Ok(rows.len() as u32)
}

/// Ids per `UPDATE … WHERE id IN (…)`.
const ID_CHUNK: usize = 500;

/// Moves `ids` to `pool` (gone: with `gone_at`), in a few statements; answers the rows written.
async fn set_pool(
    txn: &impl ConnectionTrait,
    ids: &[i64],
    pool: NodePool,
    now: DateTime<Utc>,
) -> AppResult<u32> {
    let mut written = 0;
    for chunk in ids.chunks(ID_CHUNK) {
        let mut update = node::Entity::update_many()
            .col_expr(node::Column::Pool, Expr::value(pool))
            .col_expr(node::Column::UpdatedAt, Expr::value(now));
        if pool == NodePool::Gone {
            update = update.col_expr(node::Column::GoneAt, Expr::value(Some(now)));
        }
        written +=
            update.filter(node::Column::Id.is_in(chunk.iter().copied())).exec(txn).await?.rows_affected;
    }
    Ok(written as u32)
}

/// Rewrites `last_seen` of listed, unchanged nodes whose stored value has grown stale.
async fn refresh_seen(txn: &impl ConnectionTrait, ids: &[i64], now: DateTime<Utc>) -> AppResult<u32> {
    let mut written = 0;
    for chunk in ids.chunks(ID_CHUNK) {
        written += node::Entity::update_many()
            .col_expr(node::Column::LastSeen, Expr::value(now))
            .filter(node::Column::Id.is_in(chunk.iter().copied()))
            .exec(txn)
            .await?
            .rows_affected;
    }
    Ok(written as u32)
}

fn set_attrs(row: &mut node::ActiveModel, a: &Attrs, record: &NodeRecord) {
    set_columns(row, a, record.last_contact.and_then(|t| DateTime::from_timestamp(t, 0)));
}

fn set_columns(row: &mut node::ActiveModel, a: &Attrs, last_contact: Option<DateTime<Utc>>) {
    row.testbed_id = Set(a.testbed_id);
    row.hostname = Set(a.hostname.clone());
    row.ip = Set(a.ip.clone());
    row.host_key = Set(a.host_key.clone());
    row.site_id = Set(a.site_id);
    row.link_class = Set(a.link_class.clone());
    row.country = Set(a.country.clone());
    row.boot_state = Set(a.boot_state.clone());
    row.tags = Set(a.tags.clone());
    row.cpu_cores = Set(a.cpu_cores);
    row.memory_mb = Set(a.memory_mb);
    row.disk_gb = Set(a.disk_gb);
    row.last_contact = Set(last_contact);
}

fn new_row(a: &Attrs, record: &NodeRecord, pool: NodePool, now: DateTime<Utc>) -> node::ActiveModel {
    let mut row = node::ActiveModel {
        pool: Set(pool),
        load: Set(None),
        memory_free_mb: Set(None),
        disk_free_pct: Set(None),
        metrics_at: Set(None),
        reliability: Set(1.0),
        recent_failures: Set(0),
        first_seen: Set(now),
        last_seen: Set(now),
        gone_at: Set(None),
        due_at: Set(None),
        lease_owner: Set(None),
        lease_until: Set(None),
        updated_at: Set(now),
        ..Default::default()
    };
    set_attrs(&mut row, a, record);
    row
}
