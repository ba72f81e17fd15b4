//! `/api/v1/runs`: submit, list, inspect, cancel and retry runs, page through a run's
//! tasks; `/api/v1/validate`.

use super::auth::{needs, Allowed};
use super::error::ApiError;
use super::idempotency::Outcome;
use super::AppState;
use crate::api_types as t;
use crate::dag::origin::RunOrigin;
use crate::dag::{validate_submission, Dag, RunSpec};
use crate::state_machine::{TaskState, ALL_TASK_STATES};
use crate::store::{EventRow, RunQuery, RunRow, StoredTask, TaskQuery};
use crate::views;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

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
pub(super) async fn parse_dag(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<Dag, ApiError> {
    let body = body.map_err(|e| match e {
        BytesRejection::FailedToBufferBody(_) => ApiError::PayloadTooLarge(state.max_body_bytes),
        other => ApiError::BadRequest(other.body_text()),
    })?;
    if has_nul_escape(&body) {
        return Err(ApiError::BadRequest(
            "the DAG contains a NUL character (\\u0000), which cannot be stored; remove it from names and inputs".into(),
        ));
    }
    let mut spec: RunSpec = super::body::parse(&body)?;
    super::daily::check_ttl(spec.ttl_s)?;
    super::agents::resolve_registered(state.store.as_ref(), &mut spec).await?;
    validate_submission(spec, &state.limits).map_err(ApiError::InvalidDag)
}

/// Submit a run.
///
/// The DAG is validated whole: every problem is reported at once (`422 invalid_dag`),
/// and nothing is stored for a rejected one. Needs scope `submit`.
#[utoipa::path(post, path = "/api/v1/runs", tag = "runs", operation_id = "createRun",
    request_body = t::RunSpec,
    responses(
        (status = 201, description = "The run, accepted and stored.", body = t::RunSummary),
        (status = 413, description = "`payload_too_large`: the body is larger than `--max-body-bytes`.", body = t::ErrorResponse),
        (status = 422, description = "`invalid_dag`: the DAG breaks a rule or limit; `details` lists every problem.", body = t::ErrorResponse),
    ))]
pub(super) async fn create_run(
    allowed: Allowed<needs::Submit>,
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<t::RunSummary>), ApiError> {
    let key = super::idempotency::key(&headers)?;
    let request = body.as_ref().ok().map(|b| super::idempotency::digest(&[b]));
    let dag = parse_dag(&state, body).await?;
    let (status, run) = match (key, request) {
        (Some(key), Some(request)) => {
            let outcome = state
                .daily
                .idempotency
                .once(
                    state.store.as_ref(),
                    allowed.name(),
                    &key,
                    request,
                    |origin| super::daily::start(&state, dag, origin, allowed.name()),
                )
                .await?;
            match outcome {
                Outcome::Created(run) => (StatusCode::CREATED, run),
                Outcome::Repeated(run) => (StatusCode::OK, run),
            }
        }
        _ => {
            let run =
                super::daily::start(&state, dag, RunOrigin::default(), allowed.name()).await?;
            (StatusCode::CREATED, run)
        }
    };
    Ok((status, Json(views::summary(&run))))
}

/// Validate a DAG without submitting it.
///
/// Answers as `POST /api/v1/runs` would, without storing anything. Needs scope `submit`.
#[utoipa::path(post, path = "/api/v1/validate", tag = "runs", operation_id = "validateDag",
    request_body = t::RunSpec,
    responses(
        (status = 200, description = "The DAG would be accepted.", body = t::Validation),
        (status = 413, description = "`payload_too_large`.", body = t::ErrorResponse),
        (status = 422, description = "`invalid_dag`: `details` lists every problem.", body = t::ErrorResponse),
    ))]
pub(super) async fn validate_dag(
    _: Allowed<needs::Submit>,
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<t::Validation>, ApiError> {
    let dag = parse_dag(&state, body).await?;
    Ok(Json(t::Validation {
        valid: true,
        tasks: u32::try_from(dag.len()).unwrap_or(u32::MAX),
    }))
}

/// The query of `GET /api/v1/runs`.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ListParams {
    /// Only runs in this state.
    #[param(value_type = Option<t::RunState>)]
    state: Option<String>,
    /// A run id (`next` of the previous page): only runs older than it.
    before: Option<String>,
    /// Page size; clamped to 1–500 (default 50).
    #[param(value_type = Option<i64>, minimum = 0, maximum = 4_294_967_295_i64)]
    limit: Option<u32>,
}

/// List runs, newest first. Needs scope `read`.
#[utoipa::path(get, path = "/api/v1/runs", tag = "runs", operation_id = "listRuns",
    params(ListParams),
    responses((status = 200, description = "A page of runs.", body = t::RunList)))]
pub(super) async fn list_runs(
    _: Allowed<needs::Read>,
    State(state): State<AppState>,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<t::RunList>, ApiError> {
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
    Ok(Json(t::RunList {
        runs: runs.iter().map(views::summary).collect(),
        next,
    }))
}

/// The query of `GET /api/v1/runs/{id}`.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct RunParams {
    /// `false` answers the run's summary and history only: cheap for runs of 100,000 tasks.
    tasks: Option<bool>,
}

/// A run with its tasks. Needs scope `read`.
#[utoipa::path(get, path = "/api/v1/runs/{id}", tag = "runs", operation_id = "getRun",
    params(("id" = String, Path, description = "Run id."), RunParams),
    responses(
        (status = 200, description = "The run.", body = t::Run),
        (status = 404, description = "`not_found`: no such run.", body = t::ErrorResponse),
    ))]
pub(super) async fn get_run(
    _: Allowed<needs::Read>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    params: Result<Query<RunParams>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::response::Response, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let with_tasks = p.tasks != Some(false);
    // Taken before reading: what is read is then at least this new (api/run_docs.rs).
    let generation = state.engine.generation().current();
    let body = match state.run_docs.get(&id, with_tasks, generation) {
        Some(body) => body,
        None => {
            let run = if with_tasks {
                run_document(&state, &id).await?
            } else {
                run_head(&state, &id).await?
            };
            let body = Bytes::from(
                serde_json::to_vec(&run).map_err(|e| ApiError::Internal(e.to_string()))?,
            );
            state
                .run_docs
                .put(&id, with_tasks, generation, body.clone());
            body
        }
    };
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

/// A run's summary and history, without its tasks (`GET /api/v1/runs/{id}?tasks=false`).
async fn run_head(state: &AppState, id: &str) -> Result<t::Run, ApiError> {
    let run = find_run(state, id).await?;
    // Who created, cancelled or retried it: small, and what a run page shows first.
    let history = state.store.run_history(id).await?;
    Ok(t::Run {
        summary: views::summary(&run),
        history: history.iter().map(views::event_view).collect(),
        agents: None,
        concurrency_limits: None,
        tasks: None,
        tasks_next_after: None,
    })
}

/// A run with its tasks, as `GET /api/v1/runs/{id}` answers it: all of them, or for a
/// run of more than `--max-inline-tasks` the first that many and `tasks_next_after`, the
/// cursor to continue from with `GET /api/v1/runs/{id}/tasks`.
pub(super) async fn run_document(state: &AppState, id: &str) -> Result<t::Run, ApiError> {
    let run = find_run(state, id).await?;
    let page = TaskQuery {
        limit: state.max_inline_tasks,
        ..TaskQuery::default()
    };
    let (tasks, next_after) = task_page(state, &run, &page).await?;
    // The run's own transitions, with who caused them: created, cancelled, retried.
    let history = state.store.run_history(id).await?;
    Ok(t::Run {
        summary: views::summary(&run),
        history: history.iter().map(views::event_view).collect(),
        // The agents and limits the run was submitted with (registered ones resolved).
        agents: Some(run.options.agents.clone()),
        concurrency_limits: Some(run.options.concurrency_limits.clone()),
        tasks: Some(tasks),
        tasks_next_after: next_after,
    })
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
) -> Result<(Vec<t::Task>, Option<String>), ApiError> {
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
    let mut views: Vec<t::Task> = tasks
        .iter()
        .map(|t| {
            views::task_view(
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

/// The query of `GET /api/v1/runs/{id}/tasks`.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct TaskListParams {
    /// Read by the auth layer (`?token=`); accepted so it is not an unknown parameter.
    #[allow(dead_code)]
    #[param(ignore)]
    token: Option<String>,
    /// Only tasks in these states: task states separated by commas (`failed,running`).
    #[param(
        pattern = r"^(pending|ready|queued|running|succeeded|failed|cancelled|skipped)(,(pending|ready|queued|running|succeeded|failed|cancelled|skipped))*$"
    )]
    state: Option<String>,
    /// A task id (`next_after` of the previous page): only tasks after it.
    after: Option<String>,
    /// Page size, 1–5000 (default 500).
    #[param(minimum = 1, maximum = 5000)]
    limit: Option<u32>,
    /// Only tasks that changed since a read: the `next_since` of that read's first
    /// page. A task changed is answered whole, as it is now; one may come again
    /// unchanged (a cursor covers the commit it was read in, inclusive).
    #[param(minimum = 0)]
    since: Option<u64>,
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

/// A page of a run's tasks, in id order, optionally only those that changed since an
/// earlier read (`since`). Needs scope `read`.
#[utoipa::path(get, path = "/api/v1/runs/{id}/tasks", tag = "runs", operation_id = "listTasks",
    params(("id" = String, Path, description = "Run id."), TaskListParams),
    responses(
        (status = 200, description = "A page of tasks.", body = t::TaskPage),
        (status = 400, description = "`bad_request`: a malformed parameter.", body = t::ErrorResponse),
        (status = 404, description = "`not_found`: no such run, or `after` names no task of it.", body = t::ErrorResponse),
        (status = 409, description = "`conflict`: `since` is ahead of anything the run has written (a cursor of another run, or of a store since restored).", body = t::ErrorResponse),
    ))]
pub(super) async fn list_tasks(
    _: Allowed<needs::Read>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    params: Result<Query<TaskListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<t::TaskPage>, ApiError> {
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
    // Read before the page: whatever is committed after this read carries a `rev` at
    // or past it (`TaskRow::rev`), so the next read from it misses nothing.
    let run = find_run(&state, &id).await?;
    if let Some(since) = p.since.filter(|&s| s > run.last_seq) {
        // A cursor of another run, or of a store since restored from a backup: what
        // changed cannot be told from it. 409, not 400: the request is well formed, and
        // the run's state is what it disagrees with.
        return Err(ApiError::Conflict(format!(
            "since: {since} is ahead of run {id}, whose changes go up to {}; read its tasks without since",
            run.last_seq
        )));
    }
    let q = TaskQuery {
        states,
        after: p.after,
        since: p.since,
        limit,
    };
    let (tasks, next_after) = task_page(&state, &run, &q).await?;
    // An empty page after a cursor may mean the cursor names no task: say so, rather
    // than answer as if the run had ended there.
    if let (true, Some(after)) = (tasks.is_empty(), &q.after) {
        if state.store.get_task(&id, after).await?.is_none() {
            // 404, not 400: the request is well formed; what it names does not exist.
            return Err(ApiError::NotFound(format!(
                "after: task {after} is not in run {id}"
            )));
        }
    }
    Ok(Json(t::TaskPage {
        tasks,
        next_after,
        next_since: run.last_seq,
    }))
}

/// A task with its upstream outputs, attempts, logs and events. Needs scope `read`.
#[utoipa::path(get, path = "/api/v1/runs/{id}/tasks/{task_id}", tag = "runs", operation_id = "getTask",
    params(("id" = String, Path, description = "Run id."), ("task_id" = String, Path, description = "Task id within the run.")),
    responses(
        (status = 200, description = "The task.", body = t::TaskDetail),
        (status = 404, description = "`not_found`: no such run or task.", body = t::ErrorResponse),
    ))]
pub(super) async fn get_task(
    _: Allowed<needs::Read>,
    State(state): State<AppState>,
    Path((id, task_id)): Path<(String, String)>,
) -> Result<Json<t::TaskDetail>, ApiError> {
    let run = find_run(&state, &id).await?;
    let task = state
        .store
        .get_task(&id, &task_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("task {task_id} not found in run {id}")))?;
    // Every dependency's output, null until it has one; read in one query, as a fan-in
    // task may have thousands.
    let mut upstream: BTreeMap<String, Value> = task
        .spec
        .depends_on
        .iter()
        .map(|dep| (dep.clone(), Value::Null))
        .collect();
    for dep in state
        .store
        .get_tasks_by_id(&id, &task.spec.depends_on)
        .await?
    {
        if let Some(out) = dep.row.output {
            upstream.insert(dep.row.task_id, out);
        }
    }
    let events = state.store.events(&id, 0, Some(&task_id), 100_000).await?;
    let progress = state.engine.progress(&id).await.unwrap_or_default();
    let progress = progress
        .iter()
        .find(|(t, _, _)| *t == task_id)
        .map(|(_, p, m)| (*p, m.as_str()));
    let logs = events
        .iter()
        .filter(|e| e.kind == "log")
        .map(|e| {
            let text = |k: &str| {
                e.data
                    .as_ref()
                    .and_then(|d| d.get(k))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            t::LogLine {
                attempt: e.attempt,
                level: text("level"),
                message: text("message"),
                at_ms: e.at_ms,
            }
        })
        .collect();
    Ok(Json(t::TaskDetail {
        task: {
            let mut view = views::task_view(&task, &run.queue, progress);
            super::rerun::mark_reused(&run.options, std::slice::from_mut(&mut view));
            view
        },
        run_id: id,
        upstream,
        attempts: attempts(&task, &events),
        logs,
        events: events
            .iter()
            .filter(|e| e.kind != "log")
            .map(views::event_view)
            .collect(),
    }))
}

/// Every attempt of a task, rebuilt from its event log.
fn attempts(task: &StoredTask, events: &[EventRow]) -> Vec<t::Attempt> {
    let mut out: Vec<t::Attempt> = Vec::new();
    for e in events.iter().filter(|e| e.kind == "task" && e.attempt > 0) {
        if out.last().is_none_or(|a| a.attempt != e.attempt) {
            out.push(t::Attempt {
                attempt: e.attempt,
                ..t::Attempt::default()
            });
        }
        let a = out.last_mut().expect("pushed above");
        let finish = |a: &mut t::Attempt, outcome: &str| {
            a.finished_at_ms = Some(e.at_ms);
            a.outcome = Some(outcome.to_owned());
            a.worker_id.clone_from(&e.worker_id);
            a.error = views::event_error(e.data.as_ref());
        };
        match e.state.as_deref() {
            Some("queued") => a.queued_at_ms = Some(e.at_ms),
            Some("running") => {
                a.started_at_ms = Some(e.at_ms);
                a.worker_id.clone_from(&e.worker_id);
            }
            Some(s @ ("succeeded" | "failed" | "cancelled")) => finish(a, s),
            // A failed attempt that will be retried waits in `ready`.
            Some("ready") => finish(a, "failed"),
            _ => {}
        }
    }
    // The final attempt's start time is on the task row when its `started` was coalesced.
    if let Some(a) = out.last_mut() {
        if a.attempt == task.row.attempt && a.started_at_ms.is_none() {
            a.started_at_ms = task.row.started_at_ms;
        }
    }
    out
}

/// The query of `GET /api/v1/runs/{id}/events`.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct EventParams {
    /// Only events after this sequence number (default 0: from the start).
    since: Option<u64>,
    /// Most events to answer (default 10,000; at most 100,000).
    #[param(value_type = Option<i64>, minimum = 0, maximum = 4_294_967_295_i64)]
    limit: Option<u32>,
}

/// A run's stored events in sequence order. Needs scope `read`.
#[utoipa::path(get, path = "/api/v1/runs/{id}/events", tag = "runs", operation_id = "listEvents",
    params(("id" = String, Path, description = "Run id."), EventParams),
    responses(
        (status = 200, description = "The events.", body = t::EventList),
        (status = 404, description = "`not_found`: no such run.", body = t::ErrorResponse),
    ))]
pub(super) async fn list_events(
    _: Allowed<needs::Read>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    params: Result<Query<EventParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<t::EventList>, ApiError> {
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
    Ok(Json(t::EventList {
        events: events.iter().map(views::event_view).collect(),
    }))
}

/// Cancel a running run: queued and pending tasks are cancelled, running attempts are
/// told to stop. Needs scope `operate`.
#[utoipa::path(post, path = "/api/v1/runs/{id}/cancel", tag = "runs", operation_id = "cancelRun",
    params(("id" = String, Path, description = "Run id.")),
    responses(
        (status = 202, description = "Cancelling: the run as it is now.", body = t::RunSummary),
        (status = 404, description = "`not_found`: no such run.", body = t::ErrorResponse),
        (status = 409, description = "`conflict`: the run is already finished.", body = t::ErrorResponse),
    ))]
pub(super) async fn cancel_run(
    allowed: Allowed<needs::Operate>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<t::RunSummary>), ApiError> {
    let run = state.engine.cancel(&id, allowed.name()).await?;
    Ok((StatusCode::ACCEPTED, Json(views::summary(&run))))
}

/// Re-run a finished run's failed, cancelled and skipped tasks. Needs scope `operate`.
#[utoipa::path(post, path = "/api/v1/runs/{id}/retry", tag = "runs", operation_id = "retryRun",
    params(("id" = String, Path, description = "Run id.")),
    responses(
        (status = 202, description = "Running again: the run as it is now.", body = t::RunSummary),
        (status = 404, description = "`not_found`: no such run.", body = t::ErrorResponse),
        (status = 409, description = "`conflict`: the run is still running, or succeeded.", body = t::ErrorResponse),
    ))]
pub(super) async fn retry_run(
    allowed: Allowed<needs::Operate>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<t::RunSummary>), ApiError> {
    let _not_being_deleted = state.daily.deletions.lock().await;
    let run = state.engine.rerun(&id, allowed.name()).await?;
    Ok((StatusCode::ACCEPTED, Json(views::summary(&run))))
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
