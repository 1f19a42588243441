//! Liveness and monitoring in the REST API: a node's metrics over time, its pool history and liveness, the
//! pools' counts over time, the re-test queue (and "re-test now", for operators), and the provisioning
//! statistics. Any logged-in caller may read them (as the node list); only operators re-test.

use super::{ApiCaller, ApiPath};
use axum::{
    Json,
    extract::{Query, State},
    http::StatusCode,
};
use chrono::TimeDelta;
use model::{
    error::{AppError, ssr::ErrorBody},
    slivers::{
        MetricPoint, MetricsQuery, NodeLiveness, PoolCountsPoint, PoolEventView, ProvisioningStats,
        RetestItem, StatsQuery,
    },
};
use portolan_core::{
    liveness::{self, monitor, stats},
    nodes::require_operator,
    state::AppState,
};

/// A node's metrics since `since` (default: a day ago), at the finest resolution kept that far back
/// (minutes for a day, quarters of an hour for a week, hours for 90 days).
#[utoipa::path(get, path = "/api/v1/nodes/{id}/metrics", tag = "nodes", params(("id" = i64, Path), MetricsQuery),
    responses((status = 200, body = [MetricPoint]), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn metrics(
    State(state): State<AppState>,
    ApiCaller(_caller): ApiCaller,
    ApiPath(id): ApiPath<i64>,
    Query(query): Query<MetricsQuery>,
) -> Result<Json<Vec<MetricPoint>>, AppError> {
    portolan_core::nodes::get(&state.db, id).await?;
    let now = state.clock.now();
    let since = query.since.unwrap_or(now - TimeDelta::days(1));
    let rows = monitor::series(&state.db, id, since, now).await?;
    Ok(Json(
        rows.into_iter()
            .map(|b| MetricPoint {
                at: b.at,
                width_s: b.width_s,
                samples: b.samples,
                load: b.load,
                memory_total_mb: b.memory_total_mb,
                memory_free_mb: b.memory_free_mb,
                disk_free_pct: b.disk_free_pct,
                net_rx_bps: b.net_rx_bps,
                net_tx_bps: b.net_tx_bps,
            })
            .collect(),
    ))
}

/// A node's pool changes, newest first (at most 500).
#[utoipa::path(get, path = "/api/v1/nodes/{id}/pool-history", tag = "nodes", params(("id" = i64, Path)),
    responses((status = 200, body = [PoolEventView]), (status = 404, body = ErrorBody)))]
pub async fn pool_history(
    State(state): State<AppState>,
    ApiCaller(_caller): ApiCaller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Vec<PoolEventView>>, AppError> {
    stats::pool_history(&state.db, id, 500).await.map(Json)
}

/// A node's liveness: pool, next check, service sliver, availability, MTBF, set-up success, recent pool
/// changes.
#[utoipa::path(get, path = "/api/v1/nodes/{id}/liveness", tag = "nodes", params(("id" = i64, Path)),
    responses((status = 200, body = NodeLiveness), (status = 404, body = ErrorBody)))]
pub async fn node_liveness(
    State(state): State<AppState>,
    ApiCaller(_caller): ApiCaller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<NodeLiveness>, AppError> {
    stats::node_liveness(&state.db, id, state.clock.now()).await.map(Json)
}

/// Re-tests a node now (operators, write scope): it is due at once, and the next liveness pass tests it.
#[utoipa::path(post, path = "/api/v1/nodes/{id}/retest", tag = "nodes", params(("id" = i64, Path)),
    responses((status = 202, description = "due now"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn retest(
    State(state): State<AppState>,
    ApiCaller(caller): ApiCaller,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, AppError> {
    require_operator(&caller)?;
    caller.require_write()?;
    portolan_core::nodes::get(&state.db, id).await?;
    if liveness::retest_now(&state.db, id, state.clock.now()).await? {
        Ok(StatusCode::ACCEPTED)
    } else {
        Err(AppError::conflict("only new, free and down nodes are tested; this one is gone or held"))
    }
}

/// The next checks, soonest first (at most 500).
#[utoipa::path(get, path = "/api/v1/liveness/queue", tag = "nodes",
    responses((status = 200, body = [RetestItem]), (status = 401, body = ErrorBody)))]
pub async fn queue(
    State(state): State<AppState>,
    ApiCaller(_caller): ApiCaller,
) -> Result<Json<Vec<RetestItem>>, AppError> {
    stats::retest_queue(&state.db, 500).await.map(Json)
}

/// How many nodes were in each pool over the last week (48 points).
#[utoipa::path(get, path = "/api/v1/pools/history", tag = "nodes",
    responses((status = 200, body = [PoolCountsPoint]), (status = 401, body = ErrorBody)))]
pub async fn pools_history(
    State(state): State<AppState>,
    ApiCaller(_caller): ApiCaller,
) -> Result<Json<Vec<PoolCountsPoint>>, AppError> {
    let now = state.clock.now();
    stats::pool_counts_over_time(&state.db, now - TimeDelta::weeks(1), now, 48).await.map(Json)
}

/// Bring-up statistics since `since` (default: a week ago): durations p50/p95/p99 of the attempts that came
/// up, and failure rates, overall, per step, per API generation, per site and per day.
#[utoipa::path(get, path = "/api/v1/provisioning/stats", tag = "nodes", params(StatsQuery),
    responses((status = 200, body = ProvisioningStats), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn provisioning(
    State(state): State<AppState>,
    ApiCaller(_caller): ApiCaller,
    Query(query): Query<StatsQuery>,
) -> Result<Json<ProvisioningStats>, AppError> {
    let since = query.since.unwrap_or(state.clock.now() - TimeDelta::weeks(1));
    stats::provisioning(&state.db, since).await.map(Json)
}
