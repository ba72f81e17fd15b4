//! How runs, tasks and events look in the API and on the event bus: the typed bodies of
//! [`crate::api_types`], built from store rows. One place, so REST answers and live
//! events cannot disagree.

use crate::api_types::{self as t, TaskError};
use crate::state_machine::TaskFailure;
use crate::store::{EventRow, RunRow, StoredTask};
use serde_json::Value;
use worker_protocol::WorkerInfo;

/// A run without its tasks.
pub fn summary(r: &RunRow) -> t::RunSummary {
    t::RunSummary {
        id: r.id.clone(),
        name: r.name.clone(),
        queue: r.queue.clone(),
        state: r.state,
        created_at_ms: r.created_at_ms,
        finished_at_ms: r.finished_at_ms,
        task_count: r.task_count,
        counts: crate::store::counts_map(&r.counts)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        error: r.error.clone(),
        last_seq: r.last_seq,
        usage: r.usage,
        budget: r.options.budget,
        max_parallel: r.options.max_parallel,
        created_by: r.created_by.clone(),
        template: r.options.origin.as_ref().and_then(|o| o.template.clone()),
        schedule: r.options.origin.as_ref().and_then(|o| o.schedule.clone()),
        schedule_tick_ms: r.options.origin.as_ref().and_then(|o| o.tick_ms),
        hook: r.options.origin.as_ref().and_then(|o| o.hook.clone()),
        ttl_s: r.options.ttl_s,
        rerun_of: r.options.rerun_of.as_ref().map(|o| t::RerunLink {
            run: o.run.clone(),
            from: o.from.clone(),
        }),
    }
}

/// A run without its tasks, as JSON (the WebSocket snapshots).
pub fn run_summary(r: &RunRow) -> Value {
    to_value(&summary(r))
}

/// An attempt's failure as the API shows it.
pub fn task_error(f: &TaskFailure) -> TaskError {
    TaskError {
        kind: f.kind.clone(),
        error_type: f.error_type.clone(),
        message: f.message.clone(),
        traceback: f.traceback.clone(),
    }
}

/// A task: its spec and its current state.
pub fn task_view(
    st: &StoredTask,
    run_queue: &str,
    progress: Option<(Option<f64>, &str)>,
) -> t::Task {
    let s = &st.spec;
    let r = &st.row;
    t::Task {
        id: r.task_id.clone(),
        handler: s.handler.clone(),
        queue: s.queue_or(run_queue).to_owned(),
        input: s.input.clone(),
        depends_on: s.depends_on.clone(),
        trigger: s.trigger,
        retries: s.retries,
        retry_backoff_s: s.retry_backoff_s,
        timeout_s: s.timeout_s,
        idle_timeout_s: s.idle_timeout_s,
        priority: s.priority,
        agent: s.agent.clone(),
        parent: s.parent.clone(),
        concurrency_key: s.concurrency_key.clone(),
        budget: s.budget,
        usage: r.usage,
        state: r.state,
        attempt: r.attempt,
        output: r.output.clone(),
        error: r.error.as_ref().map(task_error),
        worker_id: r.worker_id.clone(),
        queued_at_ms: r.queued_at_ms,
        started_at_ms: r.started_at_ms,
        finished_at_ms: r.finished_at_ms,
        progress: progress.and_then(|p| p.0),
        progress_message: progress.map(|p| p.1.to_owned()),
        reused_from: None,
        waiting_for: waiting_for(r.state.as_str(), r.error.as_ref().map(|e| e.kind.as_str())),
    }
}

/// A task as JSON (the WebSocket snapshot).
pub fn task(st: &StoredTask, run_queue: &str, progress: Option<(Option<f64>, &str)>) -> Value {
    to_value(&task_view(st, run_queue, progress))
}

/// The failure an event's data records, when it records one.
pub fn event_error(data: Option<&Value>) -> Option<TaskError> {
    data.and_then(|d| serde_json::from_value(d.clone()).ok())
}

/// What a waiting task waits for: `budget` (a raise) or `approval`; null when not waiting.
fn waiting_for(state: &str, error_kind: Option<&str>) -> Option<String> {
    match (state, error_kind) {
        ("waiting", Some(crate::state_machine::AWAITING_BUDGET)) => Some("budget".into()),
        ("waiting", _) => Some("approval".into()),
        _ => None,
    }
}

/// A stored event.
pub fn event_view(e: &EventRow) -> t::Event {
    let is_log = e.kind == "log";
    let text = |k: &str| {
        e.data
            .as_ref()
            .and_then(|d| d.get(k))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    t::Event {
        seq: e.seq,
        run_id: e.run_id.clone(),
        task_id: e.task_id.clone(),
        kind: e.kind.clone(),
        state: e.state.clone(),
        attempt: e.attempt,
        at_ms: e.at_ms,
        worker_id: e.worker_id.clone(),
        error: if is_log {
            None
        } else {
            event_error(e.data.as_ref())
        },
        level: if is_log { text("level") } else { None },
        message: if is_log { text("message") } else { None },
        // Only on events an API request caused: most events are workers' and the scheduler's.
        reason: (e.state.as_deref() == Some("waiting"))
            .then(|| {
                let kind = e
                    .data
                    .as_ref()
                    .and_then(|d| d.get("kind"))
                    .and_then(Value::as_str);
                waiting_for("waiting", kind)
            })
            .flatten(),
        by: e.by.clone(),
        stored_at_ms: None,
    }
}

/// A worker as the engine knows it: what it said of itself, with the state and
/// heartbeat the engine tracks.
pub fn worker(info: &WorkerInfo, state: &str, last_heartbeat_ms: i64) -> t::Worker {
    t::Worker {
        id: info.id.clone(),
        host: info.host.clone(),
        pid: info.pid,
        queues: info.queues.clone(),
        concurrency: info.concurrency,
        in_flight: info.in_flight,
        handlers: info.handlers.clone(),
        version: info.version.clone(),
        state: state.to_owned(),
        started_at_ms: info.started_at_ms,
        last_heartbeat_ms,
        heartbeat_interval_s: info.heartbeat_interval_s,
    }
}

/// A view as JSON. The views are plain data (string keys, finite numbers), so this cannot
/// fail; `Null` would only hide a bug, which the contract test would then catch.
fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}
