//! `/api/v1/runs`: submit, list, inspect, cancel and retry runs, page through a run's
//! tasks; `/api/v1/validate`.

use super::auth::{needs, Allowed};
use super::error::ApiError;
use super::AppState;
use crate::dag::{validate_submission, Dag, RunSpec};
use crate::state_machine::{TaskState, ALL_TASK_STATES};
use crate::store::{EventRow, RunQuery, RunRow, StoredTask, TaskQuery};
use crate::views;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/runs", post(create_run).get(list_runs))
        .route("/api/v1/runs/{id}", get(get_run))
        .route("/api/v1/runs/{id}/tasks", get(list_tasks))
        .route("/api/v1/runs/{id}/tasks/{task_id}", get(get_task))
        .route("/api/v1/runs/{id}/events", get(list_events))
        .route("/api/v1/runs/{id}/cancel", post(cancel_run))
        .route("/api/v1/runs/{id}/retry", post(retry_run))
        .route("/api/v1/validate", post(validate_dag))
}

/// True when JSON text holds the escape `\u0000` (a NUL character), as opposed to a
/// literal backslash followed by `u0000`: an odd run of backslashes starts an escape.
pub(super) fn has_nul_escape(body: &[u8]) -> bool {
    let needle = b"u0000";
    (1..body.len().saturating_sub(needle.len() - 1)).any(|i| {
        body[i..].starts_with(needle)
            && body[..i].iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 1
    })
}

/// Parses and validates a submitted DAG; nothing is stored for a rejected one.
async fn parse_dag(state: &AppState, body: Result<Bytes, BytesRejection>) -> Result<Dag, ApiError> {
    let body = body.map_err(|e| match e {
        BytesRejection::FailedToBufferBody(_) => ApiError::PayloadTooLarge(state.max_body_bytes),
        other => ApiError::BadRequest(other.body_text()),
    })?;
    if has_nul_escape(&body) {
        return Err(ApiError::BadRequest(
            "the DAG contains a NUL character (\\u0000), which cannot be stored; remove it from names and inputs".into(),
        ));
    }
    let mut spec: RunSpec =
        serde_json::from_slice(&body).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    super::agents::resolve_registered(state.store.as_ref(), &mut spec).await?;
    validate_submission(spec, &state.limits).map_err(ApiError::InvalidDag)
}

async fn create_run(
    allowed: Allowed<needs::Submit>,
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let dag = parse_dag(&state, body).await?;
    // A run is accepted only when it can be stored now; otherwise the caller is told
    // to come back rather than left waiting on an outage.
    let reachable =
        tokio::time::timeout(std::time::Duration::from_secs(2), state.store.ping()).await;
    if !matches!(reachable, Ok(Ok(()))) {
        return Err(ApiError::Unavailable(
            "the store is unavailable; try again shortly".into(),
        ));
    }
    let run = state.engine.submit(dag, allowed.name()).await?;
    Ok((StatusCode::CREATED, Json(views::run_summary(&run))))
}

async fn validate_dag(
    _: Allowed<needs::Submit>,
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let dag = parse_dag(&state, body).await?;
    Ok(Json(json!({"valid": true, "tasks": dag.len()})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    state: Option<String>,
    before: Option<String>,
    limit: Option<u32>,
}

async fn list_runs(
    _: Allowed<needs::Read>,
    State(state): State<AppState>,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    if let Some(s) = &p.state {
        if crate::state_machine::RunState::parse(s).is_none() {
            return Err(ApiError::BadRequest(format!(
                "unknown run state {s:?}: use running, succeeded, failed or cancelled"
            )));
        }
    }
    let limit = p.limit.unwrap_or(50).clamp(1, 500);
    let runs = state
        .store
        .list_runs(&RunQuery {
            state: p.state,
            before: p.before,
            limit: limit + 1,
        })
        .await?;
    let more = runs.len() > limit as usize;
    let runs = &runs[..runs.len().min(limit as usize)];
    let next = if more {
        runs.last().map(|r| r.id.clone())
    } else {
        None
    };
    Ok(Json(
        json!({"runs": runs.iter().map(views::run_summary).collect::<Vec<_>>(), "next": next}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunParams {
    /// `false` answers the run's summary only: cheap for runs of 100,000 tasks.
    tasks: Option<bool>,
}

async fn get_run(
    _: Allowed<needs::Read>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    params: Result<Query<RunParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    if p.tasks == Some(false) {
        let mut body = views::run_summary(&find_run(&state, &id).await?);
        // Who created, cancelled or retried it: small, and what a run page shows first.
        let history = state.store.run_history(&id).await?;
        body["history"] = history.iter().map(views::event).collect();
        return Ok(Json(body));
    }
    run_document(&state, &id).await.map(Json)
}

/// A run with its tasks, as `GET /api/v1/runs/{id}` answers it: all of them, or for a
/// run of more than `--max-inline-tasks` the first that many and `tasks_next_after`, the
/// cursor to continue from with `GET /api/v1/runs/{id}/tasks`.
pub(super) async fn run_document(state: &AppState, id: &str) -> Result<Value, ApiError> {
    let run = find_run(state, id).await?;
    let page = TaskQuery {
        limit: state.max_inline_tasks,
        ..TaskQuery::default()
    };
    let (tasks, next_after) = task_page(state, &run, &page).await?;
    let mut body = views::run_summary(&run);
    // The agents and limits the run was submitted with (registered ones resolved).
    body["agents"] = json!(run.options.agents);
    body["concurrency_limits"] = json!(run.options.concurrency_limits);
    // The run's own transitions, with who caused them: created, cancelled, retried.
    let history = state.store.run_history(id).await?;
    body["history"] = history.iter().map(views::event).collect();
    body["tasks"] = Value::Array(tasks);
    if let Some(after) = next_after {
        body["tasks_next_after"] = json!(after);
    }
    Ok(body)
}

async fn find_run(state: &AppState, id: &str) -> Result<RunRow, ApiError> {
    state
        .store
        .get_run(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("run {id} not found")))
}

/// One page of a run's tasks as the API shows them, and the cursor of the next page
/// when there is one.
async fn task_page(
    state: &AppState,
    run: &RunRow,
    q: &TaskQuery,
) -> Result<(Vec<Value>, Option<String>), ApiError> {
    // One task more than asked says whether another page follows.
    let probe = TaskQuery {
        limit: q.limit.saturating_add(1),
        ..q.clone()
    };
    let mut tasks = state.store.list_tasks(&run.id, &probe).await?;
    let more = tasks.len() > q.limit as usize;
    tasks.truncate(q.limit as usize);
    let next_after = more
        .then(|| tasks.last().map(|t| t.row.task_id.clone()))
        .flatten();
    let progress: HashMap<String, (Option<f64>, String)> = if run.state.is_terminal() {
        HashMap::new()
    } else {
        state
            .engine
            .progress(&run.id)
            .await?
            .into_iter()
            .map(|(t, p, m)| (t, (p, m)))
            .collect()
    };
    let mut views: Vec<Value> = tasks
        .iter()
        .map(|t| {
            views::task(
                t,
                &run.queue,
                progress.get(&t.row.task_id).map(|(p, m)| (*p, m.as_str())),
            )
        })
        .collect();
    super::rerun::mark_reused(&run.options, &mut views);
    Ok((views, next_after))
}

/// Tasks per page of `GET /api/v1/runs/{id}/tasks` unless `limit` says otherwise.
const TASK_PAGE: u32 = 500;
/// The most `limit` may ask for.
const MAX_TASK_PAGE: u32 = 5_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskListParams {
    /// Read by the auth layer (`?token=`); accepted so it is not an unknown parameter.
    #[allow(dead_code)]
    token: Option<String>,
    /// Comma-separated task states.
    state: Option<String>,
    after: Option<String>,
    limit: Option<u32>,
}

/// The task states a `state` parameter lists (`failed,running`).
fn parse_task_states(list: &str) -> Result<Vec<TaskState>, ApiError> {
    list.split(',')
        .map(|s| {
            TaskState::parse(s.trim()).ok_or_else(|| {
                let known: Vec<&str> = ALL_TASK_STATES.iter().map(|s| s.as_str()).collect();
                ApiError::BadRequest(format!(
                    "state: unknown task state {s:?}; use one or more of {}, separated by commas",
                    known.join(", ")
                ))
            })
        })
        .collect()
}

async fn list_tasks(
    State(state): State<AppState>,
    Path(id): Path<String>,
    params: Result<Query<TaskListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let limit = match p.limit {
        None => TASK_PAGE,
        Some(n @ 1..=MAX_TASK_PAGE) => n,
        Some(n) => {
            return Err(ApiError::BadRequest(format!(
                "limit: {n} is outside 1..={MAX_TASK_PAGE}"
            )))
        }
    };
    let states = match p.state.as_deref() {
        Some(list) => parse_task_states(list)?,
        None => Vec::new(),
    };
    let run = find_run(&state, &id).await?;
    let q = TaskQuery {
        states,
        after: p.after,
        limit,
    };
    let (tasks, next_after) = task_page(&state, &run, &q).await?;
    // An empty page after a cursor may mean the cursor names no task: say so, rather
    // than answer as if the run had ended there.
    if let (true, Some(after)) = (tasks.is_empty(), &q.after) {
        if state.store.get_task(&id, after).await?.is_none() {
            return Err(ApiError::BadRequest(format!(
                "after: task {after} is not in run {id}"
            )));
        }
    }
    Ok(Json(json!({"tasks": tasks, "next_after": next_after})))
}

async fn get_task(
    _: Allowed<needs::Read>,
    State(state): State<AppState>,
    Path((id, task_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let run = find_run(&state, &id).await?;
    let task = state
        .store
        .get_task(&id, &task_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("task {task_id} not found in run {id}")))?;
    let mut upstream = serde_json::Map::new();
    for dep in &task.spec.depends_on {
        let out = state
            .store
            .get_task(&id, dep)
            .await?
            .and_then(|t| t.row.output);
        upstream.insert(dep.clone(), out.unwrap_or(Value::Null));
    }
    let events = state.store.events(&id, 0, Some(&task_id), 100_000).await?;
    let progress = state.engine.progress(&id).await.unwrap_or_default();
    let progress = progress
        .iter()
        .find(|(t, _, _)| *t == task_id)
        .map(|(_, p, m)| (*p, m.as_str()));
    let mut body = views::task(&task, &run.queue, progress);
    super::rerun::mark_reused(&run.options, std::slice::from_mut(&mut body));
    body["run_id"] = json!(id);
    body["upstream"] = Value::Object(upstream);
    body["attempts"] = json!(attempts(&task, &events));
    body["logs"] = events
        .iter()
        .filter(|e| e.kind == "log")
        .map(|e| {
            let d = e.data.clone().unwrap_or(Value::Null);
            json!({"attempt": e.attempt, "level": d["level"], "message": d["message"], "at_ms": e.at_ms})
        })
        .collect();
    body["events"] = events
        .iter()
        .filter(|e| e.kind != "log")
        .map(views::event)
        .collect();
    Ok(Json(body))
}

/// Every attempt of a task, rebuilt from its event log.
fn attempts(task: &StoredTask, events: &[EventRow]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for e in events.iter().filter(|e| e.kind == "task" && e.attempt > 0) {
        if out.last().is_none_or(|a| a["attempt"] != json!(e.attempt)) {
            out.push(
                json!({"attempt": e.attempt, "worker_id": null, "queued_at_ms": null,
                "started_at_ms": null, "finished_at_ms": null, "outcome": null, "error": null}),
            );
        }
        let a = out.last_mut().expect("pushed above");
        match e.state.as_deref() {
            Some("queued") => a["queued_at_ms"] = json!(e.at_ms),
            Some("running") => {
                a["started_at_ms"] = json!(e.at_ms);
                a["worker_id"] = json!(e.worker_id);
            }
            Some(s @ ("succeeded" | "failed" | "cancelled")) => {
                a["finished_at_ms"] = json!(e.at_ms);
                a["outcome"] = json!(s);
                a["worker_id"] = json!(e.worker_id);
                a["error"] = e.data.clone().unwrap_or(Value::Null);
            }
            // A failed attempt that will be retried waits in `ready`.
            Some("ready") => {
                a["finished_at_ms"] = json!(e.at_ms);
                a["outcome"] = json!("failed");
                a["worker_id"] = json!(e.worker_id);
                a["error"] = e.data.clone().unwrap_or(Value::Null);
            }
            _ => {}
        }
    }
    // The final attempt's start time is on the task row when its `started` was coalesced.
    if let Some(a) = out.last_mut() {
        if a["attempt"] == json!(task.row.attempt) && a["started_at_ms"].is_null() {
            a["started_at_ms"] = json!(task.row.started_at_ms);
        }
    }
    out
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventParams {
    since: Option<u64>,
    limit: Option<u32>,
}

async fn list_events(
    _: Allowed<needs::Read>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    params: Result<Query<EventParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    if state.store.get_run(&id).await?.is_none() {
        return Err(ApiError::NotFound(format!("run {id} not found")));
    }
    let events = state
        .store
        .events(
            &id,
            p.since.unwrap_or(0),
            None,
            p.limit.unwrap_or(10_000).min(100_000),
        )
        .await?;
    Ok(Json(
        json!({"events": events.iter().map(views::event).collect::<Vec<_>>()}),
    ))
}

async fn cancel_run(
    allowed: Allowed<needs::Operate>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let run = state.engine.cancel(&id, allowed.name()).await?;
    Ok((StatusCode::ACCEPTED, Json(views::run_summary(&run))))
}

async fn retry_run(
    allowed: Allowed<needs::Operate>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let run = state.engine.rerun(&id, allowed.name()).await?;
    Ok((StatusCode::ACCEPTED, Json(views::run_summary(&run))))
}

#[cfg(test)]
mod tests {
    use super::has_nul_escape;

    #[test]
    fn a_nul_escape_is_found_and_a_literal_backslash_is_not() {
        assert!(has_nul_escape(br#"{"input": "a\u0000b"}"#));
        assert!(
            has_nul_escape(br#"{"x": "\\\u0000"}"#),
            "an escaped backslash, then a NUL"
        );
        assert!(
            !has_nul_escape(br#"{"x": "\\u0000"}"#),
            "a backslash, then the text u0000"
        );
        assert!(!has_nul_escape(br#"{"x": "u0000"}"#));
        assert!(!has_nul_escape(b""));
    }
}
