//! The per-node manager: the synchronous path. `Create` answers when the sliver is up or has failed (after 1
//! to 15 minutes of testbed time under the `paper` profile, failing about a quarter of the time even on healthy
//! nodes). Only the `node-manager` API generation has it.
//!
//! A slice may be created on a node when the central API bound it there or a valid ticket for it was delivered
//! with `Ticket`.

use super::{
    Testbed,
    fault::{Code, Fault, PlcResult},
    plcapi::{int, string, time},
    random,
    state::Sliver,
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
    match method {
        "Ticket" => ticket(tb, node, &params),
        "Create" => create(tb, node, &slice_name(&params)?).await,
        "ReCreate" => {
            destroy(tb, node, &slice_name(&params)?)?;
            create(tb, node, &slice_name(&params)?).await
        }
        "Destroy" => destroy(tb, node, &slice_name(&params)?),
        "Start" => set_running(tb, node, &slice_name(&params)?, true),
        "Stop" => set_running(tb, node, &slice_name(&params)?, false),
        "GetRecord" => get_record(tb, node, &slice_name(&params)?),
        other => Err(Fault::new(Code::InvalidMethod, format!("Invalid method {other}"))),
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

fn authorised_slice(tb: &Testbed, node: usize, name: &str) -> PlcResult<i32> {
    let state = tb.state();
    let slice = state.slice_by_name(name).ok_or_else(|| Fault::invalid(format!("No such slice {name}")))?;
    if state.slivers.contains_key(&(slice.slice_id, node)) || state.tickets.contains(&(slice.slice_id, node))
    {
        Ok(slice.slice_id)
    } else {
        Err(Fault::denied(format!("slice {name} is not bound to this node and no ticket was delivered")))
    }
}

async fn create(tb: &Testbed, node: usize, name: &str) -> PlcResult<Value> {
    let slice_id = authorised_slice(tb, node, name)?;
    if tb.state().sliver_up(slice_id, node, tb.now()) {
        return Ok(int(1));
    }
    let attempt = {
        let mut state = tb.state();
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

fn destroy(tb: &Testbed, node: usize, name: &str) -> PlcResult<Value> {
    let mut state = tb.state();
    if let Some(slice) = state.slice_by_name(name).map(|s| s.slice_id) {
        state.slivers.remove(&(slice, node));
    }
    Ok(int(1))
}

fn set_running(tb: &Testbed, node: usize, name: &str, running: bool) -> PlcResult<Value> {
    let mut state = tb.state();
    let slice = state.slice_by_name(name).map(|s| s.slice_id);
    match slice.and_then(|s| state.slivers.get_mut(&(s, node))) {
        Some(sliver) => {
            sliver.running = running;
            Ok(int(1))
        }
        None => Err(Fault::invalid(format!("No sliver {name} on this node"))),
    }
}

fn get_record(tb: &Testbed, node: usize, name: &str) -> PlcResult<Value> {
    let state = tb.state();
    let now = tb.now();
    let slice = state.slice_by_name(name);
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
    Ok(Value::Struct(record))
}
