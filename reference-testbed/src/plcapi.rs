//! The PLCAPI methods. Each takes the call's parameters (an auth struct first) and answers an XML-RPC value
//! or a PLCAPI fault, with PLCAPI's field names and return shapes. Nothing here waits.
//!
//! Writes run under the state lock. Reads (`Get*` with filters) compile their filter first, take the lock only
//! to snapshot what they need (the node table and its indexes are `Arc`s: O(1)), and build, filter and project
//! their rows after releasing it, building only the fields the query needs.

use super::{
    Testbed,
    fault::{Code, Fault, PlcResult},
    filter::{Query, Row},
    state::{Person, ROLE_ADMIN, ROLE_PI, ROLE_USER, Slice, Sliver, State, role_name},
};
use crate::random;
use dxr::Value;
use std::collections::HashMap;
use std::hash::Hash;

/// PLC's renewal cap for everyone but admins.
pub const MAX_RENEWAL_S: f64 = 8.0 * 7.0 * 86400.0;
/// A new slice's lease.
pub const INITIAL_LEASE_S: f64 = 14.0 * 86400.0;
const SESSION_S: f64 = 86400.0;

pub const BOOT_STATES: [&str; 7] = ["boot", "dbg", "diag", "disabled", "install", "reinstall", "safeboot"];

pub fn int(i: i32) -> Value {
    Value::Integer(i)
}

/// A time (Unix seconds) as PLCAPI answers it. PLC sent times as XML-RPC `int`, a signed 32-bit integer, which
/// ends on 2038-01-19 (after about 11 real days at time scale 360). Times that fit are still sent as `int`,
/// exactly as PLC did; later ones as `i8`, the 64-bit extension that Python's `xmlrpc.client` (and dxr) read as
/// an ordinary integer. A client that only knows `int` fails to parse answers holding times past 2038 rather
/// than reading a wrapped value. Fractions of a second are dropped (rounded down).
pub fn time(t: f64) -> Value {
    // `as` saturates (NaN becomes 0), so this never panics.
    wide(t.floor() as i64)
}

/// An integer as `int` when it fits 32 bits, else as `i8`.
pub fn wide(n: i64) -> Value {
    match i32::try_from(n) {
        Ok(small) => Value::Integer(small),
        Err(_) => Value::Long(n),
    }
}

/// A time given by a client: `int`, `i8`, `double` (what Python's `xmlrpc.client` must send for times past
/// 2038, since it refuses to marshal ints beyond 32 bits) or `dateTime.iso8601` (read as UTC).
pub fn time_arg(value: &Value, what: &str) -> PlcResult<f64> {
    match value {
        Value::Integer(t) => Ok(f64::from(*t)),
        Value::Long(t) => Ok(*t as f64),
        Value::Double(t) if t.is_finite() => Ok(t.floor()),
        Value::DateTime(d) => Ok(unix_seconds(d)),
        _ => Err(Fault::invalid(format!(
            "{what} must be a time: Unix seconds (int, i8 or double) or a dateTime.iso8601 in UTC"
        ))),
    }
}

/// Unix seconds of a UTC calendar time (days from the civil calendar, after Howard Hinnant).
fn unix_seconds(d: &dxr::DateTime) -> f64 {
    let (y, m) = (i64::from(d.year()), i64::from(d.month()));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + i64::from(d.day()) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (days * 86400 + i64::from(d.hour()) * 3600 + i64::from(d.minute()) * 60 + i64::from(d.second())) as f64
}

pub fn string(s: impl Into<String>) -> Value {
    Value::String(s.into())
}

fn ints(items: impl IntoIterator<Item = i32>) -> Value {
    Value::Array(items.into_iter().map(Value::Integer).collect())
}

fn row(pairs: Vec<(&str, Value)>) -> Row {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// Builds a row with only the fields `query` wants; a field's value is computed only when wanted.
struct RowBuilder<'q> {
    query: &'q Query,
    row: Row,
}

impl<'q> RowBuilder<'q> {
    fn new(query: &'q Query) -> Self {
        Self { query, row: Row::new() }
    }

    fn put(mut self, field: &'static str, value: impl FnOnce() -> Value) -> Self {
        if self.query.wants(field) {
            self.row.insert(field.to_owned(), value());
        }
        self
    }

    fn done(self) -> Row {
        self.row
    }
}

fn rows_value(rows: Vec<Row>) -> Value {
    Value::Array(rows.into_iter().map(Value::Struct).collect())
}

/// The parameters of one call, with PLCAPI's checks.
struct Call<'a> {
    method: &'a str,
    params: Vec<Value>,
}

impl Call<'_> {
    fn arity(&self, min: usize, max: usize) -> PlcResult<()> {
        let n = self.params.len();
        if n < min || n > max {
            let want = if min == max { format!("{min}") } else { format!("{min} to {max}") };
            return Err(Fault::new(
                Code::InvalidArgumentCount,
                format!("{} takes {want} arguments (auth included), not {n}", self.method),
            ));
        }
        Ok(())
    }

    /// A `Get*` call's arguments (auth, then an optional filter and optional return fields), compiled against
    /// the method's `fields`; bare ids match `id_field`, bare names `name_field`.
    fn query(&self, fields: &[&str], id_field: &str, name_field: &str) -> PlcResult<Query> {
        self.arity(1, 3)?;
        Query::compile(self.get(1), self.get(2), fields, id_field, name_field)
    }

    fn get(&self, i: usize) -> Option<&Value> {
        self.params.get(i).filter(|v| !matches!(v, Value::Nil))
    }

    fn structure(&self, i: usize, what: &str) -> PlcResult<&std::collections::BTreeMap<String, Value>> {
        match self.get(i) {
            Some(Value::Struct(s)) => Ok(s),
            _ => Err(Fault::invalid(format!("{what} must be a struct"))),
        }
    }

    fn list(&self, i: usize, what: &str) -> PlcResult<&[Value]> {
        match self.get(i) {
            Some(Value::Array(a)) => Ok(a),
            _ => Err(Fault::invalid(format!("{what} must be a list"))),
        }
    }
}

fn text<'a>(fields: &'a std::collections::BTreeMap<String, Value>, key: &str) -> PlcResult<Option<&'a str>> {
    match fields.get(key) {
        None | Some(Value::Nil) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Fault::invalid(format!("{key} must be a string"))),
    }
}

/// A PLCAPI method: what runs once the caller is authenticated.
#[derive(Clone, Copy)]
enum Handler {
    /// Runs under the state lock (writes, and reads of one record).
    Locked(fn(&Testbed, &Call, &mut State, &Person, f64) -> PlcResult<Value>),
    /// A filtered read: takes the lock itself, only to snapshot what it needs, and builds, filters and
    /// projects its rows after releasing it.
    Read(fn(&Testbed, &Call, &Person, f64) -> PlcResult<Value>),
}

use Handler::{Locked, Read};

/// Every method the reference testbed serves. PLC answers an unknown method before it looks at the
/// credentials, so the name is looked up here first.
const METHODS: &[(&str, Handler)] = &[
    ("AuthCheck", Locked(|_, call, _, _, _| call.arity(1, 1).map(|()| int(1)))),
    ("GetSession", Locked(|_, call, state, caller, now| get_session(call, state, caller, now))),
    (
        "GetBootStates",
        Locked(|_, call, _, _, _| {
            call.arity(1, 1).map(|()| Value::Array(BOOT_STATES.iter().map(|s| string(*s)).collect()))
        }),
    ),
    ("GetSites", Read(|tb, call, _, _| get_sites(tb, call))),
    ("GetNodes", Read(|tb, call, _, now| get_nodes(tb, call, now))),
    ("GetInterfaces", Read(|tb, call, _, _| get_interfaces(tb, call))),
    ("GetNodeTags", Read(|tb, call, _, _| get_node_tags(tb, call))),
    ("GetSlices", Read(|tb, call, caller, _| get_slices(tb, call, caller))),
    ("AddSlice", Locked(add_slice)),
    ("UpdateSlice", Locked(update_slice)),
    ("DeleteSlice", Locked(|_, call, state, caller, _| delete_slice(call, state, caller))),
    ("AddSliceToNodes", Locked(add_slice_to_nodes)),
    (
        "DeleteSliceFromNodes",
        Locked(|_, call, state, caller, _| delete_slice_from_nodes(call, state, caller)),
    ),
    ("AddPersonToSlice", Locked(|_, call, state, caller, _| add_person_to_slice(call, state, caller))),
    ("GetSliceTicket", Locked(|tb, call, state, caller, now| get_slice_ticket(tb, call, state, caller, now))),
    ("GetSlivers", Locked(get_slivers)),
    ("GetPersons", Read(|tb, call, caller, _| get_persons(tb, call, caller))),
    ("AddPerson", Locked(|_, call, state, caller, now| add_person(call, state, caller, now))),
    ("AddPersonToSite", Locked(|tb, call, state, caller, _| add_person_to_site(tb, call, state, caller))),
    ("AddRoleToPerson", Locked(|_, call, state, caller, _| add_role_to_person(call, state, caller))),
    ("AddPersonKey", Locked(|_, call, state, caller, _| add_person_key(call, state, caller))),
    ("GetKeys", Read(|tb, call, caller, _| get_keys(tb, call, caller))),
];

/// Whether `method` is a filtered read, whose cost grows with the world (and belongs off the async workers);
/// the others touch a few records and run in microseconds.
pub fn is_read(method: &str) -> bool {
    METHODS.iter().any(|(name, handler)| *name == method && matches!(handler, Read(_)))
}

/// Runs `method` for the testbed at its current time.
pub fn call(tb: &Testbed, method: &str, params: Vec<Value>) -> PlcResult<Value> {
    let call = Call { method, params };
    let now = tb.now();
    let Some((_, handler)) = METHODS.iter().find(|(name, _)| *name == method) else {
        return Err(Fault::new(Code::InvalidMethod, format!("Invalid method {method}")));
    };
    if call.params.is_empty() {
        return Err(Fault::new(Code::InvalidArgumentCount, format!("{method} needs an auth struct first")));
    }
    match handler {
        Locked(handler) => {
            let mut state = tb.state();
            let caller = authenticate(&state, &call.params[0], now)?;
            handler(tb, &call, &mut state, &caller, now)
        }
        Read(handler) => {
            let caller = authenticate(&tb.state(), &call.params[0], now)?;
            handler(tb, &call, &caller, now)
        }
    }
}

/// The person an auth struct (`password` or `session`) names, or fault 103.
pub(crate) fn authenticate(state: &State, auth: &Value, now: f64) -> PlcResult<Person> {
    let fail = |why: &str| Fault::new(Code::AuthenticationFailure, format!("Authentication failed: {why}"));
    let Value::Struct(auth) = auth else { return Err(fail("the first argument must be an auth struct")) };
    let field = |k: &str| match auth.get(k) {
        Some(Value::String(s)) => Some(s.as_str()),
        _ => None,
    };
    let person = match field("AuthMethod") {
        Some("password") => {
            let (Some(user), Some(password)) = (field("Username"), field("AuthString")) else {
                return Err(fail("password auth needs Username and AuthString"));
            };
            state
                .persons
                .values()
                .find(|p| p.email.eq_ignore_ascii_case(user) && p.password_matches(password))
                .ok_or_else(|| fail("no such user or wrong password"))?
        }
        Some("session") => {
            let key = field("session").ok_or_else(|| fail("session auth needs a session"))?;
            match state.sessions.get(key) {
                Some((person_id, expires)) if *expires > now => {
                    state.persons.get(person_id).ok_or_else(|| fail("session of a deleted user"))?
                }
                _ => return Err(fail("no such session, or it has expired")),
            }
        }
        Some(other) => return Err(fail(&format!("AuthMethod {other} is not supported here"))),
        None => return Err(fail("AuthMethod is missing")),
    };
    if !person.enabled {
        return Err(fail("account disabled"));
    }
    Ok(person.clone())
}

fn get_session(call: &Call, state: &mut State, caller: &Person, now: f64) -> PlcResult<Value> {
    call.arity(1, 1)?;
    use rand::RngCore;
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    let key = hex::encode(bytes);
    state.sessions.insert(key.clone(), (caller.person_id, now + SESSION_S));
    Ok(string(key))
}

const SITE_FIELDS: &[&str] = &[
    "site_id",
    "login_base",
    "name",
    "abbreviated_name",
    "url",
    "enabled",
    "is_public",
    "max_slices",
    "max_slivers",
    "latitude",
    "longitude",
    "node_ids",
    "person_ids",
    "slice_ids",
    "date_created",
    "last_updated",
];

fn get_sites(tb: &Testbed, call: &Call) -> PlcResult<Value> {
    let query = call.query(SITE_FIELDS, "site_id", "login_base")?;
    // Under the lock: the node table (an Arc) and the persons' and slices' sites, one pass each.
    let (nodes, mut persons, mut slices) = {
        let state = tb.state();
        let persons = state.persons.values().flat_map(|p| p.site_ids.iter().map(|&site| (site, p.person_id)));
        let slices = state.slices.values().map(|s| (s.site_id, s.slice_id));
        (state.nodes.clone(), grouped(&query, "person_ids", persons), grouped(&query, "slice_ids", slices))
    };
    let nodes_by_site = nodes.iter().enumerate().filter(|(_, n)| n.present);
    let nodes_by_site = nodes_by_site.map(|(_, n)| (tb.world.sites[n.site].site_id, n.node_id));
    let mut by_site = grouped(&query, "node_ids", nodes_by_site);
    let rows = tb
        .world
        .sites
        .iter()
        .map(|site| {
            RowBuilder::new(&query)
                .put("site_id", || int(site.site_id))
                .put("login_base", || string(&site.login_base))
                .put("name", || string(&site.name))
                .put("abbreviated_name", || string(&site.login_base))
                .put("url", || string(""))
                .put("enabled", || Value::Boolean(true))
                .put("is_public", || Value::Boolean(true))
                .put("max_slices", || int(10))
                .put("max_slivers", || int(1000))
                .put("latitude", || Value::Nil)
                .put("longitude", || Value::Nil)
                .put("node_ids", || take_ids(&mut by_site, &site.site_id))
                .put("person_ids", || take_ids(&mut persons, &site.site_id))
                .put("slice_ids", || take_ids(&mut slices, &site.site_id))
                .put("date_created", || time(tb.start))
                .put("last_updated", || time(tb.start))
                .done()
        })
        .collect();
    Ok(rows_value(query.run(rows)))
}

/// The ids of `(key, id)` pairs grouped by key, if `query` wants `field` (else nothing is grouped).
fn grouped<K: Eq + Hash>(
    query: &Query,
    field: &str,
    pairs: impl Iterator<Item = (K, i32)>,
) -> HashMap<K, Vec<i32>> {
    let mut groups: HashMap<K, Vec<i32>> = HashMap::new();
    if query.wants(field) {
        for (key, id) in pairs {
            groups.entry(key).or_default().push(id);
        }
    }
    groups
}

/// The ids grouped under `key`, as an XML-RPC array (empty when none).
fn take_ids<K: Eq + Hash>(groups: &mut HashMap<K, Vec<i32>>, key: &K) -> Value {
    ints(groups.remove(key).unwrap_or_default())
}

const NODE_FIELDS: &[&str] = &[
    "node_id",
    "hostname",
    "site_id",
    "boot_state",
    "run_level",
    "node_type",
    "model",
    "version",
    "ssh_rsa_key",
    "interface_ids",
    "slice_ids",
    "last_contact",
    "last_updated",
    "date_created",
];

/// `GetNodes`: under the lock only the node table and its indexes (Arcs) and, if wanted, the slices per
/// node; bare ids and hostnames are looked up in the indexes rather than matched against every row.
fn get_nodes(tb: &Testbed, call: &Call, now: f64) -> PlcResult<Value> {
    let query = call.query(NODE_FIELDS, "node_id", "hostname")?;
    let (nodes, by_id, by_host, mut slices_by_node) = {
        let state = tb.state();
        let slices = if query.wants("slice_ids") { state.slices_by_node() } else { HashMap::new() };
        (state.nodes.clone(), state.by_id.clone(), state.by_host.clone(), slices)
    };
    let ssh = tb.ssh.published();
    let candidates: Vec<usize> = match query.ids() {
        Some((ids, names)) => {
            let mut found: Vec<usize> = ids
                .iter()
                .filter_map(|id| by_id.get(id))
                .chain(names.iter().filter_map(|name| by_host.get(name)))
                .copied()
                .collect();
            found.sort_unstable();
            found.dedup();
            found
        }
        None => (0..nodes.len()).filter(|&i| nodes[i].present).collect(),
    };
    let rows = candidates
        .into_iter()
        .map(|i| {
            let (n, w) = (&nodes[i], &tb.world.nodes[i]);
            RowBuilder::new(&query)
                .put("node_id", || int(n.node_id))
                .put("hostname", || string(&n.hostname))
                .put("site_id", || int(tb.world.sites[n.site].site_id))
                .put("boot_state", || string(if n.up { "boot" } else { "dbg" }))
                .put("run_level", || string(if n.up { "boot" } else { "failboot" }))
                .put("node_type", || string("regular"))
                .put("model", || string("Custom"))
                .put("version", || string("PlanetLab 4.3"))
                .put("ssh_rsa_key", || string(ssh.host_key(i, &w.host_key)))
                .put("interface_ids", || ints([interface_id(i)]))
                .put("slice_ids", || take_ids(&mut slices_by_node, &i))
                .put("last_contact", || if n.up { time(now - 60.0) } else { time(n.last_change) })
                .put("last_updated", || time(n.last_change))
                .put("date_created", || time(tb.start))
                .done()
        })
        .collect();
    Ok(rows_value(query.run(rows)))
}

fn interface_id(node: usize) -> i32 {
    node as i32 + 1
}

const INTERFACE_FIELDS: &[&str] = &[
    "interface_id",
    "node_id",
    "ip",
    "is_primary",
    "method",
    "type",
    "netmask",
    "network",
    "bwlimit",
    "hostname",
];

fn get_interfaces(tb: &Testbed, call: &Call) -> PlcResult<Value> {
    let query = call.query(INTERFACE_FIELDS, "interface_id", "ip")?;
    let nodes = tb.state().nodes.clone();
    let rows = (0..nodes.len())
        .filter(|&i| nodes[i].present)
        .map(|i| {
            let (n, w) = (&nodes[i], &tb.world.nodes[i]);
            let octets = n.ip.octets();
            RowBuilder::new(&query)
                .put("interface_id", || int(interface_id(i)))
                .put("node_id", || int(n.node_id))
                .put("ip", || string(n.ip.to_string()))
                .put("is_primary", || Value::Boolean(true))
                .put("method", || string("static"))
                .put("type", || string("ipv4"))
                .put("netmask", || string("255.255.255.240"))
                .put("network", || {
                    string(format!("{}.{}.{}.{}", octets[0], octets[1], octets[2], octets[3] & 0xf0))
                })
                .put("bwlimit", || w.bw_limit_kbps.map_or(Value::Nil, |kbps| wide(i64::from(kbps) * 1000)))
                .put("hostname", || Value::Nil)
                .done()
        })
        .collect();
    Ok(rows_value(query.run(rows)))
}

const NODE_TAG_FIELDS: &[&str] = &["node_tag_id", "node_id", "tagname", "value"];

/// Node tags carry what PLC kept in tags and Portolan needs: link class, country, capacity, resources; and
/// where the sliver's SSH endpoint answers (`ssh_endpoint`, `ssh_login`: see [`crate::ssh`]).
fn get_node_tags(tb: &Testbed, call: &Call) -> PlcResult<Value> {
    let query = call.query(NODE_TAG_FIELDS, "node_tag_id", "tagname")?;
    let nodes = tb.state().nodes.clone();
    let ssh = tb.ssh.published();
    let mut rows = Vec::new();
    for i in (0..nodes.len()).filter(|&i| nodes[i].present) {
        let w = &tb.world.nodes[i];
        let mut tags = vec![
            ("link_class", w.link_class.as_str().to_owned()),
            ("cpu_cores", w.cpu_cores.to_string()),
            ("memory_mb", w.memory_mb.to_string()),
            ("disk_gb", w.disk_gb.to_string()),
        ];
        if let Some(c) = &w.country {
            tags.push(("country", c.clone()));
        }
        if let Some(bw) = w.bw_limit_kbps {
            tags.push(("bw_limit_kbps", bw.to_string()));
        }
        tags.extend(ssh.tags(i));
        for (k, (tagname, value)) in tags.into_iter().enumerate() {
            rows.push(
                RowBuilder::new(&query)
                    .put("node_tag_id", || int(interface_id(i) * 16 + k as i32))
                    .put("node_id", || int(nodes[i].node_id))
                    .put("tagname", || string(tagname))
                    .put("value", || string(value))
                    .done(),
            );
        }
    }
    Ok(rows_value(query.run(rows)))
}

const SLICE_FIELDS: &[&str] = &[
    "slice_id",
    "name",
    "site_id",
    "description",
    "url",
    "instantiation",
    "max_nodes",
    "created",
    "expires",
    "creator_person_id",
    "node_ids",
    "person_ids",
    "slice_tag_ids",
];

/// The wanted fields of a slice's row (built under the lock: slices are few, made by callers).
fn slice_row(query: &Query, state: &State, s: &Slice) -> Row {
    RowBuilder::new(query)
        .put("slice_id", || int(s.slice_id))
        .put("name", || string(&s.name))
        .put("site_id", || int(s.site_id))
        .put("description", || string(&s.description))
        .put("url", || string(&s.url))
        .put("instantiation", || string(&s.instantiation))
        .put("max_nodes", || int(s.max_nodes))
        .put("created", || time(s.created))
        .put("expires", || time(s.expires))
        .put("creator_person_id", || int(s.creator_person_id))
        .put("node_ids", || ints(state.slice_nodes(s.slice_id).into_iter().map(|i| state.nodes[i].node_id)))
        .put("person_ids", || ints(s.person_ids.iter().copied()))
        .put("slice_tag_ids", || Value::Array(Vec::new()))
        .done()
}

fn visible_slice(caller: &Person, s: &Slice) -> bool {
    caller.is_admin() || caller.site_ids.contains(&s.site_id) || s.person_ids.contains(&caller.person_id)
}

/// Rows of the visible slices are built under the lock, the filter is evaluated after it.
fn get_slices(tb: &Testbed, call: &Call, caller: &Person) -> PlcResult<Value> {
    let query = call.query(SLICE_FIELDS, "slice_id", "name")?;
    let rows = {
        let state = tb.state();
        state
            .slices
            .values()
            .filter(|s| visible_slice(caller, s))
            .map(|s| slice_row(&query, &state, s))
            .collect()
    };
    Ok(rows_value(query.run(rows)))
}

fn find_slice(state: &State, v: Option<&Value>) -> PlcResult<i32> {
    match v {
        Some(Value::Integer(id)) if state.slices.contains_key(id) => Ok(*id),
        Some(Value::String(name)) => state
            .slice_by_name(name)
            .map(|s| s.slice_id)
            .ok_or_else(|| Fault::invalid(format!("No such slice {name}"))),
        Some(Value::Integer(id)) => Err(Fault::invalid(format!("No such slice {id}"))),
        _ => Err(Fault::invalid("a slice is named by its slice_id (int) or name (string)")),
    }
}

fn find_node(state: &State, v: &Value) -> PlcResult<usize> {
    match v {
        Value::Integer(id) => {
            state.by_id.get(id).copied().ok_or_else(|| Fault::invalid(format!("No such node {id}")))
        }
        Value::String(host) => {
            state.by_host.get(host).copied().ok_or_else(|| Fault::invalid(format!("No such node {host}")))
        }
        _ => Err(Fault::invalid("a node is named by its node_id (int) or hostname (string)")),
    }
}

fn find_person(state: &State, v: Option<&Value>) -> PlcResult<i32> {
    match v {
        Some(Value::Integer(id)) if state.persons.contains_key(id) => Ok(*id),
        Some(Value::String(email)) => state
            .persons
            .values()
            .find(|p| p.email.eq_ignore_ascii_case(email))
            .map(|p| p.person_id)
            .ok_or_else(|| Fault::invalid(format!("No such account {email}"))),
        _ => Err(Fault::invalid("a person is named by person_id (int) or email (string)")),
    }
}

/// PIs manage the slices of their sites; admins everything.
fn may_manage(caller: &Person, slice: &Slice) -> bool {
    may_manage_site(caller, slice.site_id)
}

/// PIs manage their own sites; admins every site.
fn may_manage_site(caller: &Person, site_id: i32) -> bool {
    caller.is_admin() || (caller.roles.contains(&ROLE_PI) && caller.site_ids.contains(&site_id))
}

/// Members may also bind and unbind nodes of their slices.
pub(crate) fn may_bind(caller: &Person, slice: &Slice) -> bool {
    may_manage(caller, slice) || slice.person_ids.contains(&caller.person_id)
}

fn add_slice(tb: &Testbed, call: &Call, state: &mut State, caller: &Person, now: f64) -> PlcResult<Value> {
    call.arity(2, 2)?;
    let fields = call.structure(1, "slice_fields")?;
    let name = text(fields, "name")?.ok_or_else(|| Fault::invalid("slice_fields needs a name"))?.to_owned();
    let valid = name.len() <= 64
        && name.split_once('_').is_some_and(|(base, rest)| !base.is_empty() && !rest.is_empty())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        return Err(Fault::invalid(format!(
            "Invalid slice name {name}: it must be <login_base>_<name> in lower-case letters, digits and _"
        )));
    }
    let (base, _) = name.split_once('_').expect("checked above");
    let site = tb
        .world
        .sites
        .iter()
        .find(|s| s.login_base == base)
        .ok_or_else(|| Fault::invalid(format!("Invalid slice prefix {base} in {name}: no such site")))?;
    if !may_manage_site(caller, site.site_id) {
        return Err(Fault::denied(format!("Not allowed to create slices at site {base}")));
    }
    if state.slice_by_name(&name).is_some() {
        return Err(Fault::invalid(format!("Slice name {name} already in use")));
    }
    let instantiation = text(fields, "instantiation")?.unwrap_or("plc-instantiated").to_owned();
    if !["plc-instantiated", "delegated", "nm-controlled"].contains(&instantiation.as_str()) {
        return Err(Fault::invalid(format!("Invalid instantiation {instantiation}")));
    }
    let max_nodes = match fields.get("max_nodes") {
        Some(Value::Integer(n)) if *n > 0 => *n,
        None => 100,
        _ => return Err(Fault::invalid("max_nodes must be a positive int")),
    };
    let slice_id = state.fresh_id();
    state.slices.insert(
        slice_id,
        Slice {
            slice_id,
            name,
            site_id: site.site_id,
            description: text(fields, "description")?.unwrap_or("").to_owned(),
            url: text(fields, "url")?.unwrap_or("").to_owned(),
            instantiation,
            max_nodes,
            created: now,
            expires: now + INITIAL_LEASE_S,
            creator_person_id: caller.person_id,
            person_ids: Vec::new(),
            renewals: 0,
        },
    );
    Ok(int(slice_id))
}

fn update_slice(tb: &Testbed, call: &Call, state: &mut State, caller: &Person, now: f64) -> PlcResult<Value> {
    call.arity(3, 3)?;
    let id = find_slice(state, call.get(1))?;
    let fields = call.structure(2, "slice_fields")?.clone();
    let slice = state.slices.get(&id).expect("found above").clone();
    if !may_manage(caller, &slice) {
        return Err(Fault::denied(format!("Not allowed to update slice {}", slice.name)));
    }
    let mut updated = slice.clone();
    for (key, value) in &fields {
        match (key.as_str(), value) {
            ("description", Value::String(s)) => updated.description = s.clone(),
            ("url", Value::String(s)) => updated.url = s.clone(),
            ("max_nodes", Value::Integer(n)) if *n > 0 => updated.max_nodes = *n,
            ("expires", t) => {
                updated.expires = renewal(tb, caller, &updated, time_arg(t, "expires")?, now)?;
                updated.renewals += 1;
            }
            (key, _) => return Err(Fault::invalid(format!("Invalid or unsupported slice field {key}"))),
        }
    }
    state.slices.insert(id, updated);
    Ok(int(1))
}

/// The expiry granted for a requested one: never in the past, at most 8 weeks ahead (admins excepted), and
/// now and then less than asked (the lease skew the profile sets), which the client only sees by reading back.
fn renewal(tb: &Testbed, caller: &Person, slice: &Slice, requested: f64, now: f64) -> PlcResult<f64> {
    if requested <= now {
        return Err(Fault::invalid("Cannot update a slice's expiration to the past"));
    }
    if slice.description.trim().is_empty() || slice.url.trim().is_empty() {
        return Err(Fault::invalid(format!(
            "Cannot renew slice {}: set its description and url first",
            slice.name
        )));
    }
    let mut granted = if caller.is_admin() { requested } else { requested.min(now + MAX_RENEWAL_S) };
    let key = [random::text_key(&slice.name), slice.renewals];
    if random::unit(tb.seed, "lease-skew", &key) < tb.profile.lease.skew_probability {
        let cut = 3600.0
            + random::unit(tb.seed, "lease-skew-size", &key) * tb.profile.lease.skew_max_hours * 3600.0;
        granted = (granted - cut).max(now + 3600.0).max(slice.expires.min(granted));
    }
    Ok(granted.floor())
}

fn delete_slice(call: &Call, state: &mut State, caller: &Person) -> PlcResult<Value> {
    call.arity(2, 2)?;
    let id = find_slice(state, call.get(1))?;
    if !may_manage(caller, &state.slices[&id]) {
        return Err(Fault::denied("Not allowed to delete this slice"));
    }
    state.slices.remove(&id);
    state.slivers.retain(|(s, _), _| *s != id);
    state.tickets.retain(|(s, _)| *s != id);
    Ok(int(1))
}

fn nodes_of(call: &Call, state: &State, i: usize) -> PlcResult<Vec<usize>> {
    call.list(i, "node_id_or_hostname_list")?.iter().map(|v| find_node(state, v)).collect()
}

fn add_slice_to_nodes(
    tb: &Testbed,
    call: &Call,
    state: &mut State,
    caller: &Person,
    now: f64,
) -> PlcResult<Value> {
    call.arity(3, 3)?;
    let id = find_slice(state, call.get(1))?;
    let slice = state.slices[&id].clone();
    if !may_bind(caller, &slice) {
        return Err(Fault::denied(format!("Not allowed to add nodes to slice {}", slice.name)));
    }
    if slice.expires <= now {
        return Err(Fault::invalid(format!("Slice {} has expired: renew it first", slice.name)));
    }
    let nodes = nodes_of(call, state, 2)?;
    let bound = state.slice_nodes(id).len();
    let new: Vec<usize> = nodes.iter().copied().filter(|n| !state.slivers.contains_key(&(id, *n))).collect();
    if bound + new.len() > slice.max_nodes as usize {
        return Err(Fault::invalid(format!(
            "Slice {} may have at most {} nodes",
            slice.name, slice.max_nodes
        )));
    }
    for node in new {
        let ready_at = tb.instantiation_delay(&slice.name, node).map(|d| now + d);
        state.slivers.insert((id, node), Sliver { ready_at, running: true });
    }
    Ok(int(1))
}

fn delete_slice_from_nodes(call: &Call, state: &mut State, caller: &Person) -> PlcResult<Value> {
    call.arity(3, 3)?;
    let id = find_slice(state, call.get(1))?;
    if !may_bind(caller, &state.slices[&id]) {
        return Err(Fault::denied("Not allowed to remove nodes from this slice"));
    }
    for node in nodes_of(call, state, 2)? {
        state.slivers.remove(&(id, node));
        state.tickets.remove(&(id, node));
    }
    Ok(int(1))
}

fn add_person_to_slice(call: &Call, state: &mut State, caller: &Person) -> PlcResult<Value> {
    call.arity(3, 3)?;
    let person = find_person(state, call.get(1))?;
    let id = find_slice(state, call.get(2))?;
    let slice = state.slices.get_mut(&id).expect("found above");
    if !may_manage(caller, slice) {
        return Err(Fault::denied("Not allowed to add people to this slice"));
    }
    if !slice.person_ids.contains(&person) {
        slice.person_ids.push(person);
    }
    Ok(int(1))
}

fn get_slice_ticket(tb: &Testbed, call: &Call, state: &State, caller: &Person, now: f64) -> PlcResult<Value> {
    call.arity(2, 2)?;
    let id = find_slice(state, call.get(1))?;
    let slice = &state.slices[&id];
    if !may_bind(caller, slice) {
        return Err(Fault::denied("Not allowed to get a ticket for this slice"));
    }
    let nodes: Vec<i32> = state.slice_nodes(id).into_iter().map(|i| state.nodes[i].node_id).collect();
    Ok(string(tb.tickets.issue(&super::ticket::Claims {
        slice_id: id,
        name: slice.name.clone(),
        node_ids: nodes,
        expires: slice.expires,
        issued: now,
    })))
}

/// The slivers up on a node, with their slices' names, expiry and members' keys: only of the slices the
/// caller may see in `GetSlices` (admins see all, as a node itself would).
fn get_slivers(_: &Testbed, call: &Call, state: &mut State, caller: &Person, now: f64) -> PlcResult<Value> {
    call.arity(2, 2)?;
    let node = find_node(state, call.get(1).unwrap_or(&Value::Nil))?;
    let slivers = state
        .node_slices(node)
        .into_iter()
        .filter(|&s| state.sliver_up(s, node, now) && visible_slice(caller, &state.slices[&s]))
        .map(|s| {
            let slice = &state.slices[&s];
            let keys = slice
                .person_ids
                .iter()
                .filter_map(|p| state.persons.get(p))
                .flat_map(|p| p.key_ids.iter().filter_map(|k| state.keys.get(k)))
                .map(|(_, key)| Value::Struct(row(vec![("key_type", string("ssh")), ("key", string(key))])))
                .collect();
            Value::Struct(row(vec![
                ("name", string(&slice.name)),
                ("slice_id", int(s)),
                ("instantiation", string(&slice.instantiation)),
                ("expires", time(slice.expires)),
                ("keys", Value::Array(keys)),
                ("attributes", Value::Array(Vec::new())),
            ]))
        })
        .collect();
    let n = &state.nodes[node];
    Ok(Value::Struct(row(vec![
        ("timestamp", time(now)),
        ("node_id", int(n.node_id)),
        ("hostname", string(&n.hostname)),
        ("slivers", Value::Array(slivers)),
    ])))
}

const PERSON_FIELDS: &[&str] = &[
    "person_id",
    "email",
    "first_name",
    "last_name",
    "roles",
    "role_ids",
    "site_ids",
    "slice_ids",
    "key_ids",
    "enabled",
    "date_created",
];

/// The visible persons' rows are built under the lock (with each person's slices from one pass over the
/// slices), the filter is evaluated after it.
fn get_persons(tb: &Testbed, call: &Call, caller: &Person) -> PlcResult<Value> {
    let query = call.query(PERSON_FIELDS, "person_id", "email")?;
    let rows = {
        let state = tb.state();
        let members = state.slices.values().flat_map(|s| s.person_ids.iter().map(|&p| (p, s.slice_id)));
        let mut slices_of = grouped(&query, "slice_ids", members);
        state
            .persons
            .values()
            .filter(|p| {
                caller.is_admin()
                    || p.person_id == caller.person_id
                    || p.site_ids.iter().any(|s| caller.site_ids.contains(s))
            })
            .map(|p| {
                RowBuilder::new(&query)
                    .put("person_id", || int(p.person_id))
                    .put("email", || string(&p.email))
                    .put("first_name", || string(&p.first_name))
                    .put("last_name", || string(&p.last_name))
                    .put("roles", || Value::Array(p.roles.iter().map(|r| string(role_name(*r))).collect()))
                    .put("role_ids", || ints(p.roles.iter().copied()))
                    .put("site_ids", || ints(p.site_ids.iter().copied()))
                    .put("slice_ids", || take_ids(&mut slices_of, &p.person_id))
                    .put("key_ids", || ints(p.key_ids.iter().copied()))
                    .put("enabled", || Value::Boolean(p.enabled))
                    .put("date_created", || time(p.created))
                    .done()
            })
            .collect()
    };
    Ok(rows_value(query.run(rows)))
}

fn add_person(call: &Call, state: &mut State, caller: &Person, now: f64) -> PlcResult<Value> {
    call.arity(2, 2)?;
    if !(caller.is_admin() || caller.roles.contains(&ROLE_PI)) {
        return Err(Fault::denied("Only admins and PIs add accounts"));
    }
    let fields = call.structure(1, "person_fields")?;
    let email =
        text(fields, "email")?.ok_or_else(|| Fault::invalid("person_fields needs an email"))?.to_owned();
    if !email.contains('@') {
        return Err(Fault::invalid(format!("Invalid e-mail address {email}")));
    }
    if state.persons.values().any(|p| p.email.eq_ignore_ascii_case(&email)) {
        return Err(Fault::invalid(format!("E-mail address {email} already in use")));
    }
    let person_id = state.fresh_id();
    // Without a password (or with an empty one) the account exists but cannot log in with a password.
    let password = text(fields, "password")?.map(str::to_owned);
    let mut person = Person::new(person_id, email, password, now);
    person.first_name = text(fields, "first_name")?.unwrap_or("").to_owned();
    person.last_name = text(fields, "last_name")?.unwrap_or("").to_owned();
    state.persons.insert(person_id, person);
    Ok(int(person_id))
}

fn add_person_to_site(tb: &Testbed, call: &Call, state: &mut State, caller: &Person) -> PlcResult<Value> {
    call.arity(3, 3)?;
    let person = find_person(state, call.get(1))?;
    let site_id = match call.get(2) {
        Some(Value::Integer(id)) if tb.world.sites.iter().any(|s| s.site_id == *id) => *id,
        Some(Value::String(base)) => tb
            .world
            .sites
            .iter()
            .find(|s| &s.login_base == base)
            .map(|s| s.site_id)
            .ok_or_else(|| Fault::invalid(format!("No such site {base}")))?,
        _ => return Err(Fault::invalid("a site is named by site_id (int) or login_base (string)")),
    };
    // PLC allowed only admins here: a PI who could add anyone to their site could then manage them.
    if !caller.is_admin() {
        return Err(Fault::denied("Only admins add people to sites"));
    }
    let p = state.persons.get_mut(&person).expect("found above");
    if !p.site_ids.contains(&site_id) {
        p.site_ids.push(site_id);
    }
    Ok(int(1))
}

fn add_role_to_person(call: &Call, state: &mut State, caller: &Person) -> PlcResult<Value> {
    call.arity(3, 3)?;
    if !caller.is_admin() {
        return Err(Fault::denied("Only admins grant roles"));
    }
    let role = match call.get(1) {
        Some(Value::String(r)) => match r.as_str() {
            "admin" => ROLE_ADMIN,
            "pi" => ROLE_PI,
            "user" => ROLE_USER,
            _ => return Err(Fault::invalid(format!("No such role {r}"))),
        },
        Some(Value::Integer(r)) if [ROLE_ADMIN, ROLE_PI, ROLE_USER].contains(r) => *r,
        _ => return Err(Fault::invalid("a role is named (admin, pi, user) or numbered (10, 20, 30)")),
    };
    let person = find_person(state, call.get(2))?;
    let p = state.persons.get_mut(&person).expect("found above");
    if !p.roles.contains(&role) {
        p.roles.push(role);
    }
    Ok(int(1))
}

fn add_person_key(call: &Call, state: &mut State, caller: &Person) -> PlcResult<Value> {
    call.arity(3, 3)?;
    let person = find_person(state, call.get(1))?;
    if !(caller.is_admin() || caller.person_id == person) {
        return Err(Fault::denied("Not allowed to add keys for this account"));
    }
    let fields = call.structure(2, "key_fields")?;
    if text(fields, "key_type")? != Some("ssh") {
        return Err(Fault::invalid("key_type must be ssh"));
    }
    let key = text(fields, "key")?.ok_or_else(|| Fault::invalid("key_fields needs a key"))?.trim().to_owned();
    if ssh_key::PublicKey::from_openssh(&key).is_err() {
        return Err(Fault::invalid("Invalid SSH version 2 public key"));
    }
    let key_id = state.fresh_id();
    state.keys.insert(key_id, (person, key));
    state.persons.get_mut(&person).expect("found above").key_ids.push(key_id);
    Ok(int(key_id))
}

const KEY_FIELDS: &[&str] = &["key_id", "person_id", "key_type", "key"];

fn get_keys(tb: &Testbed, call: &Call, caller: &Person) -> PlcResult<Value> {
    let query = call.query(KEY_FIELDS, "key_id", "key")?;
    let rows = {
        let state = tb.state();
        state
            .keys
            .iter()
            .filter(|(_, (owner, _))| caller.is_admin() || *owner == caller.person_id)
            .map(|(id, (owner, key))| {
                RowBuilder::new(&query)
                    .put("key_id", || int(*id))
                    .put("person_id", || int(*owner))
                    .put("key_type", || string("ssh"))
                    .put("key", || string(key))
                    .done()
            })
            .collect()
    };
    Ok(rows_value(query.run(rows)))
}
