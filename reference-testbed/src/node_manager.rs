//! The per-node manager: the synchronous path. `Create` answers when the sliver is up or has failed (after 1
//! to 15 minutes of testbed time under the `paper` profile, failing about a quarter of the time even on healthy
//! nodes). Only the `node-manager` API generation has it.
//!
//! A slice may be created on a node when the central API bound it there or a valid ticket for it was delivered
//! with `Ticket`.
//!
//! Every call about a slice (`Create`, `ReCreate`, `Destroy`, `Start`, `Stop`, `GetRecord`) takes the slice
//! name and then the caller's authorization for that slice, as PLC's node managers acted only for the slice
//! itself or its controller: either the slice's ticket (the string `GetSliceTicket` returns; it must name this
//! node, be unexpired and be for the slice of that name as it is now), or a PLCAPI auth struct of a person who
//! may bind the slice's nodes (an admin, a PI of the slice's site, a member). Missing or unverifiable
//! credentials answer fault 103, credentials that do not cover the slice here fault 108.

use super::{
    Testbed,
    fault::{Code, Fault, PlcResult},
    plcapi::{self, int, string, time},
    random,
    state::{Sliver, State},
};
use dxr::Value;
use std::collections::BTreeMap;

fn slice_name(params: &[Value]) -> PlcResult<String> {
    match params.first() {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(Fault::invalid("the first argument is the slice name")),
    }
}

/// Runs `method` on the node manager of `node` (a world index).
pub async fn call(tb: &Testbed, node: usize, method: &str, params: Vec<Value>) -> PlcResult<Value> {
    if method == "Ticket" {
        return ticket(tb, node, &params);
    }
    if !["Create", "ReCreate", "Destroy", "Start", "Stop", "GetRecord"].contains(&method) {
        return Err(Fault::new(Code::InvalidMethod, format!("Invalid method {method}")));
    }
    if params.len() > 2 {
        return Err(Fault::new(
            Code::InvalidArgumentCount,
            format!("{method} takes 2 arguments (the slice name, then its ticket or an auth struct)"),
        ));
    }
    let name = slice_name(&params)?;
    let slice_id = {
        let state = tb.state();
        authorise(tb, &state, node, &name, params.get(1), tb.now())?
    };
    match method {
        "Create" => create(tb, node, slice_id, &name).await,
        "ReCreate" => {
            destroy(tb, node, slice_id);
            create(tb, node, slice_id, &name).await
        }
        "Destroy" => Ok(destroy(tb, node, slice_id)),
        "Start" => set_running(tb, node, slice_id, &name, true),
        "Stop" => set_running(tb, node, slice_id, &name, false),
        _ => Ok(get_record(tb, node, slice_id, &name)),
    }
}

/// The slice called `name`, if `credential` authorizes its caller for that slice on `node` (see the module
/// documentation).
fn authorise(
    tb: &Testbed,
    state: &State,
    node: usize,
    name: &str,
    credential: Option<&Value>,
    now: f64,
) -> PlcResult<i32> {
    let unauthenticated =
        |why: &str| Fault::new(Code::AuthenticationFailure, format!("Authentication failed: {why}"));
    let no_slice = || Fault::invalid(format!("No such slice {name}"));
    match credential {
        Some(Value::String(ticket)) => {
            let claims = tb.tickets.verify(ticket).map_err(|why| unauthenticated(&why))?;
            let slice = state.slice_by_name(name).ok_or_else(no_slice)?;
            let node_id = state.nodes[node].node_id;
            if claims.name != name || claims.slice_id != slice.slice_id {
                return Err(Fault::denied(format!("the ticket is for slice {}, not {name}", claims.name)));
            }
            if !claims.node_ids.contains(&node_id) {
                return Err(Fault::denied(format!("the ticket does not name this node ({node_id})")));
            }
            if claims.expires <= now {
                return Err(Fault::denied("the ticket has expired"));
            }
            Ok(slice.slice_id)
        }
        Some(auth @ Value::Struct(_)) => {
            let caller = plcapi::authenticate(state, auth, now)?;
            let slice = state.slice_by_name(name).ok_or_else(no_slice)?;
            if !plcapi::may_bind(&caller, slice) {
                return Err(Fault::denied(format!("{} may not act for slice {name}", caller.email)));
            }
            Ok(slice.slice_id)
        }
        _ => Err(unauthenticated(
            "the second argument must be the slice's ticket (from GetSliceTicket) or an auth struct",
        )),
    }
}

fn ticket(tb: &Testbed, node: usize, params: &[Value]) -> PlcResult<Value> {
    let Some(Value::String(text)) = params.first() else {
        return Err(Fault::invalid("Ticket takes the ticket string"));
    };
    let claims = tb.tickets.verify(text).map_err(Fault::invalid)?;
    let mut state = tb.state();
    let node_id = state.nodes[node].node_id;
    if !claims.node_ids.contains(&node_id) {
        return Err(Fault::invalid(format!("the ticket does not name this node ({node_id})")));
    }
    if claims.expires <= tb.now() || !state.slices.contains_key(&claims.slice_id) {
        return Err(Fault::invalid("the ticket's slice has expired or is gone"));
    }
    state.tickets.insert((claims.slice_id, node));
    Ok(int(1))
}

/// Creates the sliver of an authorized slice: only where the slice is bound or its ticket was delivered.
async fn create(tb: &Testbed, node: usize, slice_id: i32, name: &str) -> PlcResult<Value> {
    let attempt = {
        let mut state = tb.state();
        if !(state.slivers.contains_key(&(slice_id, node)) || state.tickets.contains(&(slice_id, node))) {
            return Err(Fault::denied(format!(
                "slice {name} is not bound to this node and no ticket was delivered"
            )));
        }
        if state.sliver_up(slice_id, node, tb.now()) {
            return Ok(int(1));
        }
        let n = state.attempts.entry((slice_id, node)).or_insert(0);
        *n += 1;
        *n
    };
    let nm = &tb.profile.node_manager;
    let key = [random::text_key(name), node as u64, attempt];
    let duration =
        nm.create_min_s + (nm.create_max_s - nm.create_min_s) * random::unit(tb.seed, "nm-duration", &key);
    let fails = random::unit(tb.seed, "nm-fail", &key) < nm.create_fail_probability;
    tb.clock.sleep(duration).await;
    let mut state = tb.state();
    if fails || !state.nodes[node].up {
        return Err(Fault::new(
            Code::ApiError,
            format!("Create {name} failed on this node (attempt {attempt})"),
        ));
    }
    let now = tb.now();
    state.slivers.insert((slice_id, node), Sliver { ready_at: Some(now), running: true });
    Ok(int(1))
}

/// Removes the sliver, if any (idempotent).
fn destroy(tb: &Testbed, node: usize, slice_id: i32) -> Value {
    tb.state().slivers.remove(&(slice_id, node));
    int(1)
}

fn set_running(tb: &Testbed, node: usize, slice_id: i32, name: &str, running: bool) -> PlcResult<Value> {
    let mut state = tb.state();
    match state.slivers.get_mut(&(slice_id, node)) {
        Some(sliver) => {
            sliver.running = running;
            Ok(int(1))
        }
        None => Err(Fault::invalid(format!("No sliver {name} on this node"))),
    }
}

fn get_record(tb: &Testbed, node: usize, slice_id: i32, name: &str) -> Value {
    let state = tb.state();
    let now = tb.now();
    let slice = state.slices.get(&slice_id);
    let status = match slice.and_then(|s| state.slivers.get(&(s.slice_id, node)).map(|v| (s, v))) {
        None => "none",
        Some((s, v)) if state.sliver_ready(s.slice_id, node, now) => {
            if v.running {
                "running"
            } else {
                "stopped"
            }
        }
        Some(_) => "starting",
    };
    let mut record = BTreeMap::new();
    record.insert("name".to_owned(), string(name));
    record.insert("state".to_owned(), string(status));
    record.insert("expires".to_owned(), slice.map_or(Value::Nil, |s| time(s.expires)));
    Value::Struct(record)
}
