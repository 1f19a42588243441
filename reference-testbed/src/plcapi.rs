//! The PLCAPI methods. Each takes the call's parameters (an auth struct first) and answers an XML-RPC value
//! or a PLCAPI fault, with PLCAPI's field names and return shapes. All of it runs under the state lock; nothing
//! here waits.

use super::{
    Testbed,
    fault::{Code, Fault, PlcResult},
    filter::{self, Row},
    state::{Person, ROLE_ADMIN, ROLE_PI, ROLE_USER, Slice, Sliver, State, role_name},
};
use crate::random;
use dxr::Value;
use std::collections::HashMap;

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
type Handler = fn(&Testbed, &Call, &mut State, &Person, f64) -> PlcResult<Value>;

/// Every method the reference testbed serves. PLC answers an unknown method before it looks at the
/// credentials, so the name is looked up here first.
const METHODS: &[(&str, Handler)] = &[
    ("AuthCheck", |_, call, _, _, _| call.arity(1, 1).map(|()| int(1))),
    ("GetSession", |_, call, state, caller, now| get_session(call, state, caller, now)),
    ("GetBootStates", |_, call, _, _, _| {
        call.arity(1, 1).map(|()| Value::Array(BOOT_STATES.iter().map(|s| string(*s)).collect()))
    }),
    ("GetSites", |tb, call, state, _, _| get_sites(tb, call, state)),
    ("GetNodes", |tb, call, state, _, now| get_nodes(tb, call, state, now)),
    ("GetInterfaces", |tb, call, state, _, _| get_interfaces(tb, call, state)),
    ("GetNodeTags", |tb, call, state, _, _| get_node_tags(tb, call, state)),
    ("GetSlices", |_, call, state, caller, _| get_slices(call, state, caller)),
    ("AddSlice", add_slice),
    ("UpdateSlice", update_slice),
    ("DeleteSlice", |_, call, state, caller, _| delete_slice(call, state, caller)),
    ("AddSliceToNodes", add_slice_to_nodes),
    ("DeleteSliceFromNodes", |_, call, state, caller, _| delete_slice_from_nodes(call, state, caller)),
    ("AddPersonToSlice", |_, call, state, caller, _| add_person_to_slice(call, state, caller)),
    ("GetSliceTicket", |tb, call, state, caller, now| get_slice_ticket(tb, call, state, caller, now)),
    ("GetSlivers", get_slivers),
    ("GetPersons", |_, call, state, caller, _| get_persons(call, state, caller)),
    ("AddPerson", |_, call, state, caller, now| add_person(call, state, caller, now)),
    ("AddPersonToSite", |tb, call, state, caller, _| add_person_to_site(tb, call, state, caller)),
    ("AddRoleToPerson", |_, call, state, caller, _| add_role_to_person(call, state, caller)),
    ("AddPersonKey", |_, call, state, caller, _| add_person_key(call, state, caller)),
    ("GetKeys", |_, call, state, caller, _| get_keys(call, state, caller)),
];

/// Runs `method` for the testbed at its current time.
pub fn call(tb: &Testbed, state: &mut State, method: &str, params: Vec<Value>) -> PlcResult<Value> {
    let call = Call { method, params };
    let now = tb.now();
    let Some((_, handler)) = METHODS.iter().find(|(name, _)| *name == method) else {
        return Err(Fault::new(Code::InvalidMethod, format!("Invalid method {method}")));
    };
    if call.params.is_empty() {
        return Err(Fault::new(Code::InvalidArgumentCount, format!("{method} needs an auth struct first")));
    }
    let caller = authenticate(state, &call.params[0], now)?;
    handler(tb, &call, state, &caller, now)
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

fn get_sites(tb: &Testbed, call: &Call, state: &State) -> PlcResult<Value> {
    call.arity(1, 3)?;
    // One pass each over nodes, persons and slices, grouped by site.
    let mut nodes: HashMap<i32, Vec<i32>> = HashMap::new();
    for i in present(state) {
        nodes.entry(tb.world.sites[tb.world.nodes[i].site].site_id).or_default().push(state.nodes[i].node_id);
    }
    let mut persons: HashMap<i32, Vec<i32>> = HashMap::new();
    for p in state.persons.values() {
        for site in &p.site_ids {
            persons.entry(*site).or_default().push(p.person_id);
        }
    }
    let mut slices: HashMap<i32, Vec<i32>> = HashMap::new();
    for s in state.slices.values() {
        slices.entry(s.site_id).or_default().push(s.slice_id);
    }
    let rows = tb
        .world
        .sites
        .iter()
        .map(|site| {
            row(vec![
                ("site_id", int(site.site_id)),
                ("login_base", string(&site.login_base)),
                ("name", string(&site.name)),
                ("abbreviated_name", string(&site.login_base)),
                ("url", string("")),
                ("enabled", Value::Boolean(true)),
                ("is_public", Value::Boolean(true)),
                ("max_slices", int(10)),
                ("max_slivers", int(1000)),
                ("latitude", Value::Nil),
                ("longitude", Value::Nil),
                ("node_ids", take_ids(&mut nodes, site.site_id)),
                ("person_ids", take_ids(&mut persons, site.site_id)),
                ("slice_ids", take_ids(&mut slices, site.site_id)),
                ("date_created", time(tb.start)),
                ("last_updated", time(tb.start)),
            ])
        })
        .collect();
    let rows = filter::apply(rows, call.get(1), "site_id", "login_base")?;
    Ok(rows_value(filter::project(rows, call.get(2))?))
}

/// The ids grouped under `key`, as an XML-RPC array (empty when none).
fn take_ids(groups: &mut HashMap<i32, Vec<i32>>, key: i32) -> Value {
    ints(groups.remove(&key).unwrap_or_default())
}

fn get_nodes(tb: &Testbed, call: &Call, state: &State, now: f64) -> PlcResult<Value> {
    call.arity(1, 3)?;
    let mut slices_by_node = state.slices_by_node();
    let rows = present(state)
        .map(|i| {
            let (n, w) = (&state.nodes[i], &tb.world.nodes[i]);
            let slices = slices_by_node.remove(&i).unwrap_or_default();
            row(vec![
                ("node_id", int(n.node_id)),
                ("hostname", string(&n.hostname)),
                ("site_id", int(tb.world.sites[w.site].site_id)),
                ("boot_state", string(if n.up { "boot" } else { "dbg" })),
                ("run_level", string(if n.up { "boot" } else { "failboot" })),
                ("node_type", string("regular")),
                ("model", string("Custom")),
                ("version", string("PlanetLab 4.3")),
                ("ssh_rsa_key", string(&w.host_key)),
                ("interface_ids", ints([interface_id(i)])),
                ("slice_ids", ints(slices)),
                ("last_contact", if n.up { time(now - 60.0) } else { time(n.last_change) }),
                ("last_updated", time(n.last_change)),
                ("date_created", time(tb.start)),
            ])
        })
        .collect();
    let rows = filter::apply(rows, call.get(1), "node_id", "hostname")?;
    Ok(rows_value(filter::project(rows, call.get(2))?))
}

fn present(state: &State) -> impl Iterator<Item = usize> + '_ {
    (0..state.nodes.len()).filter(|&i| state.nodes[i].present)
}

fn interface_id(node: usize) -> i32 {
    node as i32 + 1
}

fn get_interfaces(tb: &Testbed, call: &Call, state: &State) -> PlcResult<Value> {
    call.arity(1, 3)?;
    let rows = present(state)
        .map(|i| {
            let (n, w) = (&state.nodes[i], &tb.world.nodes[i]);
            let octets = n.ip.octets();
            row(vec![
                ("interface_id", int(interface_id(i))),
                ("node_id", int(n.node_id)),
                ("ip", string(n.ip.to_string())),
                ("is_primary", Value::Boolean(true)),
                ("method", string("static")),
                ("type", string("ipv4")),
                ("netmask", string("255.255.255.240")),
                (
                    "network",
                    string(format!("{}.{}.{}.{}", octets[0], octets[1], octets[2], octets[3] & 0xf0)),
                ),
                ("bwlimit", w.bw_limit_kbps.map_or(Value::Nil, |kbps| wide(i64::from(kbps) * 1000))),
                ("hostname", Value::Nil),
            ])
        })
        .collect();
    let rows = filter::apply(rows, call.get(1), "interface_id", "ip")?;
    Ok(rows_value(filter::project(rows, call.get(2))?))
}

/// Node tags carry what PLC kept in tags and Portolan needs: link class, country, capacity, resources.
fn get_node_tags(tb: &Testbed, call: &Call, state: &State) -> PlcResult<Value> {
    call.arity(1, 3)?;
    let mut rows = Vec::new();
    for i in present(state) {
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
        for (k, (tagname, value)) in tags.into_iter().enumerate() {
            rows.push(row(vec![
                ("node_tag_id", int(interface_id(i) * 16 + k as i32)),
                ("node_id", int(state.nodes[i].node_id)),
                ("tagname", string(tagname)),
                ("value", string(value)),
            ]));
        }
    }
    let rows = filter::apply(rows, call.get(1), "node_tag_id", "tagname")?;
    Ok(rows_value(filter::project(rows, call.get(2))?))
}

fn slice_row(state: &State, s: &Slice) -> Row {
    let nodes = state.slice_nodes(s.slice_id).into_iter().map(|i| state.nodes[i].node_id);
    row(vec![
        ("slice_id", int(s.slice_id)),
        ("name", string(&s.name)),
        ("site_id", int(s.site_id)),
        ("description", string(&s.description)),
        ("url", string(&s.url)),
        ("instantiation", string(&s.instantiation)),
        ("max_nodes", int(s.max_nodes)),
        ("created", time(s.created)),
        ("expires", time(s.expires)),
        ("creator_person_id", int(s.creator_person_id)),
        ("node_ids", ints(nodes)),
        ("person_ids", ints(s.person_ids.iter().copied())),
        ("slice_tag_ids", Value::Array(Vec::new())),
    ])
}

fn visible_slice(caller: &Person, s: &Slice) -> bool {
    caller.is_admin() || caller.site_ids.contains(&s.site_id) || s.person_ids.contains(&caller.person_id)
}

fn get_slices(call: &Call, state: &State, caller: &Person) -> PlcResult<Value> {
    call.arity(1, 3)?;
    let rows =
        state.slices.values().filter(|s| visible_slice(caller, s)).map(|s| slice_row(state, s)).collect();
    let rows = filter::apply(rows, call.get(1), "slice_id", "name")?;
    Ok(rows_value(filter::project(rows, call.get(2))?))
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

fn person_row(state: &State, p: &Person) -> Row {
    let slices = state.slices.values().filter(|s| s.person_ids.contains(&p.person_id)).map(|s| s.slice_id);
    row(vec![
        ("person_id", int(p.person_id)),
        ("email", string(&p.email)),
        ("first_name", string(&p.first_name)),
        ("last_name", string(&p.last_name)),
        ("roles", Value::Array(p.roles.iter().map(|r| string(role_name(*r))).collect())),
        ("role_ids", ints(p.roles.iter().copied())),
        ("site_ids", ints(p.site_ids.iter().copied())),
        ("slice_ids", ints(slices)),
        ("key_ids", ints(p.key_ids.iter().copied())),
        ("enabled", Value::Boolean(p.enabled)),
        ("date_created", time(p.created)),
    ])
}

fn get_persons(call: &Call, state: &State, caller: &Person) -> PlcResult<Value> {
    call.arity(1, 3)?;
    let rows = state
        .persons
        .values()
        .filter(|p| {
            caller.is_admin()
                || p.person_id == caller.person_id
                || p.site_ids.iter().any(|s| caller.site_ids.contains(s))
        })
        .map(|p| person_row(state, p))
        .collect();
    let rows = filter::apply(rows, call.get(1), "person_id", "email")?;
    Ok(rows_value(filter::project(rows, call.get(2))?))
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

fn get_keys(call: &Call, state: &State, caller: &Person) -> PlcResult<Value> {
    call.arity(1, 3)?;
    let rows = state
        .keys
        .iter()
        .filter(|(_, (owner, _))| caller.is_admin() || *owner == caller.person_id)
        .map(|(id, (owner, key))| {
            row(vec![
                ("key_id", int(*id)),
                ("person_id", int(*owner)),
                ("key_type", string("ssh")),
                ("key", string(key)),
            ])
        })
        .collect();
    let rows = filter::apply(rows, call.get(1), "key_id", "key")?;
    Ok(rows_value(filter::project(rows, call.get(2))?))
}
