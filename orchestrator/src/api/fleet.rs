//! `/api/v1/workers` and `/api/v1/queues`: the worker fleet and queue depth.

use super::auth::{needs, Allowed};
use super::error::ApiError;
use super::AppState;
use crate::api_types as t;
use crate::engine::worker_view;
use crate::store::WorkerRow;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/workers", get(list_workers))
        .route("/api/v1/queues", get(list_queues))
}

/// A stored worker as the API shows it; `None` for a row whose heartbeat lacks a field
/// the API promises (a worker of an incompatible version), which is logged instead.
pub fn worker(w: &WorkerRow) -> Option<t::Worker> {
    let view = worker_view(&w.info, &w.state, w.last_heartbeat_ms);
    serde_json::from_value(view)
        .map_err(|e| tracing::warn!(worker = %w.id, error = %e, "a worker's heartbeat is not of the API's shape"))
        .ok()
}

/// Every worker the server has heard from. Needs scope `read`.
#[utoipa::path(get, path = "/api/v1/workers", tag = "fleet", operation_id = "listWorkers",
    responses((status = 200, description = "The workers.", body = t::WorkerList)))]
pub(super) async fn list_workers(
    _: Allowed<needs::Read>,
    State(state): State<AppState>,
) -> Result<Json<t::WorkerList>, ApiError> {
    let workers = state.store.list_workers().await?;
    Ok(Json(t::WorkerList {
        workers: workers.iter().filter_map(worker).collect(),
    }))
}

/// Queue depth, in-flight work and worker counts per queue.
pub async fn queue_views(state: &AppState) -> Result<Vec<t::Queue>, ApiError> {
    let stats = state.engine.queue_stats().await?;
    Ok(stats.iter().map(t::Queue::from).collect())
}

/// Depth, work in flight and workers per queue. Needs scope `read`.
#[utoipa::path(get, path = "/api/v1/queues", tag = "fleet", operation_id = "listQueues",
    responses((status = 200, description = "The queues.", body = t::QueueList)))]
pub(super) async fn list_queues(
    _: Allowed<needs::Read>,
    State(state): State<AppState>,
) -> Result<Json<t::QueueList>, ApiError> {
    Ok(Json(t::QueueList {
        queues: queue_views(&state).await?,
    }))
}
