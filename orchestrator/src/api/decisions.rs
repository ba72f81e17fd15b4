//! `/api/v1/runs/{id}/tasks/{task}/approve|reject|cancel`: a person decides one task of
//! a running run. Each answers once the decision is stored, with the task as it is then.

use super::auth::{needs, Allowed};
use super::error::ApiError;
use super::AppState;
use crate::api_types::{ApproveRequest, DecidedTask, RejectRequest};
use crate::dag::{json_size, Budget};
use crate::engine::Decision;
use crate::views;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};

/// Longest comment kept with a decision, in bytes.
const MAX_COMMENT_BYTES: usize = 4_096;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/runs/{id}/tasks/{task_id}/approve", post(approve))
        .route("/api/v1/runs/{id}/tasks/{task_id}/reject", post(reject))
        .route(
            "/api/v1/runs/{id}/tasks/{task_id}/cancel",
            post(cancel_task),
        )
}

/// Reads an optional JSON body: none, or an empty one, is the default.
fn body<T: Default + serde::de::DeserializeOwned>(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let body = body.map_err(|e| match e {
        BytesRejection::FailedToBufferBody(_) => ApiError::PayloadTooLarge(state.max_body_bytes),
        other => ApiError::BadRequest(other.body_text()),
    })?;
    // No body, or JSON `null`: the document calls the body optional, so both mean "no options".
    if body.iter().all(u8::is_ascii_whitespace) || body.trim_ascii() == b"null" {
        return Ok(T::default());
    }
    super::body::parse(&body)
}

fn check_comment(comment: &Option<String>) -> Result<(), ApiError> {
    match comment {
        Some(c) if c.len() > MAX_COMMENT_BYTES => Err(ApiError::BadRequest(format!(
            "the comment is {} bytes; at most {MAX_COMMENT_BYTES} are kept",
            c.len()
        ))),
        Some(c) if c.contains('\0') => Err(ApiError::BadRequest(
            "the comment contains a NUL character, which cannot be stored".into(),
        )),
        _ => Ok(()),
    }
}

/// The task as the API shows it, after a decision.
async fn task_view(
    state: &AppState,
    id: &str,
    task_id: &str,
) -> Result<Json<DecidedTask>, ApiError> {
    let run = state
        .store
        .get_run(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("run {id} not found")))?;
    let task = state
        .store
        .get_task(id, task_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("task {task_id} not found in run {id}")))?;
    Ok(Json(DecidedTask {
        task: views::task_view(&task, &run.queue, None),
        run_id: id.to_owned(),
    }))
}

/// Approves a waiting task: it succeeds and its dependents proceed.
#[utoipa::path(
    post,
    path = "/api/v1/runs/{id}/tasks/{task_id}/approve",
    operation_id = "approveTask",
    params(("id" = String, Path, description = "Run id"), ("task_id" = String, Path, description = "Task id")),
    request_body(content = Option<ApproveRequest>, content_type = "application/json"),
    responses(
        (status = 200, description = "Approved and stored: the task, now succeeded (or, after a budget raise, ready or waiting again)", body = DecidedTask),
        (status = 404, description = "No such run or task"),
        (status = 422, description = "A raise that does not raise, a raise for an approval task, or none for a task waiting on a budget"),
        (status = 409, description = "The task is not waiting for a decision (already decided, or never waited)"),
    ),
    tag = "runs"
)]
pub async fn approve(
    allowed: Allowed<needs::Operate>,
    State(state): State<AppState>,
    Path((id, task_id)): Path<(String, String)>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<DecidedTask>, ApiError> {
    let req: ApproveRequest = body(&state, raw)?;
    check_comment(&req.comment)?;
    if let Some(o) = &req.output {
        let size = json_size(o);
        if size > state.limits.max_input_bytes {
            return Err(ApiError::PayloadTooLarge(state.limits.max_input_bytes));
        }
    }
    if req.raise.is_some() && req.output.is_some() {
        return Err(ApiError::InvalidDecision(
            "a budget raise takes no \"output\": the task itself produces it".into(),
        ));
    }
    let decision = Decision::Approve {
        comment: req.comment,
        output: req.output,
        raise: req.raise.map(|r| Budget {
            max_tokens: r.max_tokens,
            max_cost_usd: r.max_cost_usd,
            on_exceeded: None,
        }),
    };
    state
        .engine
        .decide(&id, &task_id, decision, allowed.name())
        .await?;
    task_view(&state, &id, &task_id).await
}

/// Rejects a waiting task: it fails with error kind `rejected`.
#[utoipa::path(
    post,
    path = "/api/v1/runs/{id}/tasks/{task_id}/reject",
    operation_id = "rejectTask",
    params(("id" = String, Path, description = "Run id"), ("task_id" = String, Path, description = "Task id")),
    request_body(content = Option<RejectRequest>, content_type = "application/json"),
    responses(
        (status = 200, description = "Rejected and stored: the task, now failed", body = DecidedTask),
        (status = 404, description = "No such run or task"),
        (status = 409, description = "The task is not waiting for a decision"),
    ),
    tag = "runs"
)]
pub async fn reject(
    allowed: Allowed<needs::Operate>,
    State(state): State<AppState>,
    Path((id, task_id)): Path<(String, String)>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<DecidedTask>, ApiError> {
    let req: RejectRequest = body(&state, raw)?;
    check_comment(&req.comment)?;
    let decision = Decision::Reject {
        comment: req.comment,
    };
    state
        .engine
        .decide(&id, &task_id, decision, allowed.name())
        .await?;
    task_view(&state, &id, &task_id).await
}

/// Cancels one task of a running run; the rest of the run goes on.
#[utoipa::path(
    post,
    path = "/api/v1/runs/{id}/tasks/{task_id}/cancel",
    operation_id = "cancelTask",
    params(("id" = String, Path, description = "Run id"), ("task_id" = String, Path, description = "Task id")),
    responses(
        (status = 200, description = "Cancelled and stored: the task, now cancelled", body = DecidedTask),
        (status = 404, description = "No such run or task"),
        (status = 409, description = "The task or its run already finished"),
    ),
    tag = "runs"
)]
pub async fn cancel_task(
    allowed: Allowed<needs::Operate>,
    State(state): State<AppState>,
    Path((id, task_id)): Path<(String, String)>,
) -> Result<Json<DecidedTask>, ApiError> {
    state
        .engine
        .decide(&id, &task_id, Decision::Cancel, allowed.name())
        .await?;
    task_view(&state, &id, &task_id).await
}
