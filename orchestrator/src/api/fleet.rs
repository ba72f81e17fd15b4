//! `/api/v1/workers` and `/api/v1/queues`: the worker fleet and queue depth.

use super::auth::{needs, Allowed};
use super::error::ApiError;
use super::AppState;
use crate::engine::worker_view;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/workers", get(list_workers))
        .route("/api/v1/queues", get(list_queues))
}

async fn list_workers(
    _: Allowed<needs::Read>,
    State(state): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    let workers = state.store.list_workers().await?;
    let views: Vec<Value> = workers
        .iter()
        .map(|w| worker_view(&w.info, &w.state, w.last_heartbeat_ms))
        .collect();
    Ok(Json(json!({"workers": views})))
}

/// Queue depth, in-flight work and worker counts per queue.
pub async fn queue_views(state: &AppState) -> Result<Vec<Value>, ApiError> {
    let stats = state.engine.queue_stats().await?;
    Ok(stats
        .iter()
        .map(|q| serde_json::to_value(q).unwrap_or(Value::Null))
        .collect())
}

async fn list_queues(
    _: Allowed<needs::Read>,
    State(state): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"queues": queue_views(&state).await?})))
}
