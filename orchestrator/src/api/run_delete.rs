//! `DELETE /api/v1/runs/{id}`: deletes one finished run now, with its tasks and
//! events, as retention would once it is due.

use super::auth::{needs, Allowed};
use super::error::ApiError;
use super::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::delete;
use axum::Router;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/runs/{id}", delete(delete_run))
}

/// Deletes a finished run; a running one must be cancelled first.
#[utoipa::path(delete, path = "/api/v1/runs/{id}", tag = "runs", operation_id = "deleteRun",
    params(("id" = String, Path, description = "Run id")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "No such run"),
              (status = 409, description = "The run is still running")))]
async fn delete_run(
    _: Allowed<needs::Admin>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let run = state
        .store
        .get_run(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("run {id} not found")))?;
    if run.finished_at_ms.is_none() {
        return Err(ApiError::Conflict(format!(
            "run {id} is {}; cancel it before deleting it",
            run.state.as_str()
        )));
    }
    let deleted = crate::retention::delete(&state, std::slice::from_ref(&id)).await?;
    if deleted.runs == 0 {
        return Err(ApiError::Conflict(format!(
            "run {id} is running again; cancel it before deleting it"
        )));
    }
    Ok(StatusCode::NO_CONTENT)
}
