//! `/api/v1/audit`: who changed the agent registry and the API tokens, newest first.
//! Changes to runs are in the runs' own events (`by`), not here.

use super::auth::{needs, Allowed};
use super::error::ApiError;
use super::AppState;
use crate::store::AuditRow;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

/// The audit log route.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/audit", get(list_audit))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditParams {
    /// Only records older than this one (its `id`), to page back.
    before: Option<i64>,
    limit: Option<u32>,
}

/// An audit record as the API shows it.
fn view(a: &AuditRow) -> Value {
    json!({
        "id": a.id,
        "at_ms": a.at_ms,
        "by": a.by,
        "action": a.action.as_str(),
        "target": a.target,
        "detail": a.detail,
    })
}

async fn list_audit(
    _: Allowed<needs::Admin>,
    State(state): State<AppState>,
    params: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let limit = p.limit.unwrap_or(100).clamp(1, 1000);
    let mut records = state.store.audit_log(p.before, limit + 1).await?;
    let more = records.len() > limit as usize;
    records.truncate(limit as usize);
    let next = if more {
        records.last().map(|a| a.id)
    } else {
        None
    };
    Ok(Json(
        json!({"entries": records.iter().map(view).collect::<Vec<_>>(), "next": next}),
    ))
}
