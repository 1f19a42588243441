//! Nodes: the testbed as discovery last read it (sites, nodes with their identity history and nearest paths),
//! visible to every signed-in user; and the operators' side (admission thresholds with their "what if" counts,
//! pending identity decisions, discovery's last runs), which only operators may see or change.

use crate::error::AppError;
use leptos::prelude::*;

pub use model::nodes::*;

/// How many of discovery's runs the operators' page shows.
pub const RUNS_SHOWN: u64 = 10;

/// Without arguments: the first page of every node.
#[server(prefix = "/sf", endpoint = "list_nodes")]
pub async fn list_nodes(#[server(default)] query: NodeQuery) -> Result<NodePage, AppError> {
    crate::for_caller!(|state, _caller| portolan_core::nodes::list(&state.db, &query))
}

#[server(prefix = "/sf", endpoint = "get_node")]
pub async fn get_node(id: i64) -> Result<NodeDetail, AppError> {
    crate::for_caller!(|state, _caller| portolan_core::nodes::get(&state.db, id))
}

#[server(prefix = "/sf", endpoint = "list_sites")]
pub async fn list_sites() -> Result<Vec<SiteView>, AppError> {
    crate::for_caller!(|state, _caller| portolan_core::nodes::sites(&state.db))
}

#[server(prefix = "/sf", endpoint = "get_admission")]
pub async fn get_admission() -> Result<AdmissionView, AppError> {
    crate::for_caller!(|state, caller| async {
        portolan_core::nodes::require_operator(&caller)?;
        portolan_core::nodes::admission::get(&state.db).await
    })
}

#[server(prefix = "/sf", endpoint = "put_admission")]
pub async fn put_admission(thresholds: AdmissionView) -> Result<AdmissionView, AppError> {
    crate::for_caller!(|state, caller| portolan_core::nodes::admission::put(
        &state.db,
        state.clock.now(),
        &caller,
        &thresholds
    ))
}

/// What `thresholds` would admit now, without storing them.
#[server(prefix = "/sf", endpoint = "admission_what_if")]
pub async fn admission_what_if(thresholds: AdmissionView) -> Result<AdmissionCounts, AppError> {
    crate::for_caller!(|state, caller| async {
        portolan_core::nodes::require_operator(&caller)?;
        portolan_core::nodes::admission::what_if(&state.db, state.clock.now(), &thresholds).await
    })
}

#[server(prefix = "/sf", endpoint = "identity_decisions")]
pub async fn identity_decisions() -> Result<Vec<DecisionView>, AppError> {
    crate::for_caller!(|state, caller| async {
        portolan_core::nodes::require_operator(&caller)?;
        portolan_core::nodes::decisions(&state.db).await
    })
}

/// `decision` is `accept` (the held record is known node `node_id`) or `new`.
#[server(prefix = "/sf", endpoint = "decide_identity")]
pub async fn decide_identity(id: i64, decision: String, node_id: Option<i64>) -> Result<(), AppError> {
    crate::for_caller!(|state, caller| async {
        let decision = match (decision.as_str(), node_id) {
            ("accept", Some(node_id)) => Decision::Accept { node_id },
            ("accept", None) => return Err(AppError::invalid("node_id", "accepting a match needs node_id")),
            ("new", _) => Decision::New,
            _ => return Err(AppError::invalid("decision", "decision is `accept` or `new`")),
        };
        portolan_core::nodes::decide(&state.db, state.clock.now(), &caller, id, &decision).await
    })
}

#[server(prefix = "/sf", endpoint = "discovery_runs")]
pub async fn discovery_runs() -> Result<Vec<DiscoveryRunView>, AppError> {
    crate::for_caller!(|state, caller| async {
        portolan_core::nodes::require_operator(&caller)?;
        portolan_core::nodes::runs(&state.db, RUNS_SHOWN).await
    })
}
