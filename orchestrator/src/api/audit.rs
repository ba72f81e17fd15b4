//! `/api/v1/audit`: who changed the agent registry and the API tokens, newest first.
//! Changes to runs are in the runs' own events (`by`), not here.

use super::auth::{needs, Allowed};
use super::error::ApiError;
use super::AppState;
use crate::api_types as t;
use crate::store::AuditRow;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

/// The audit log route.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/audit", get(list_audit))
}

/// The query of `GET /api/v1/audit`.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct AuditParams {
    /// Only records older than this one (its `id`), to page back.
    before: Option<i64>,
    /// Page size; clamped to 1–1000 (default 100).
    #[param(value_type = Option<i64>, minimum = 0, maximum = 4_294_967_295_i64)]
    limit: Option<u32>,
}

/// An audit record as the API shows it.
fn view(a: &AuditRow) -> t::AuditEntry {
    t::AuditEntry {
        id: a.id,
        at_ms: a.at_ms,
        by: a.by.clone(),
        action: a.action.as_str().to_owned(),
        target: a.target.clone(),
        detail: a.detail.clone(),
    }
}

/// Who changed the agent registry and the API tokens, newest first. Needs scope `admin`.
#[utoipa::path(get, path = "/api/v1/audit", tag = "tokens", operation_id = "listAudit",
    params(AuditParams),
    responses((status = 200, description = "A page of the audit log.", body = t::AuditList)))]
pub(super) async fn list_audit(
    _: Allowed<needs::Admin>,
    State(state): State<AppState>,
    params: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Json<t::AuditList>, ApiError> {
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
    Ok(Json(t::AuditList {
        entries: records.iter().map(view).collect(),
        next,
    }))
}
