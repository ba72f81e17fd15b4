//! How runs, tasks and events look in the API and on the event bus (docs/API.md).
//! One place, so REST answers and live events cannot disagree.

use crate::store::{counts_map, EventRow, RunRow, StoredTask};
use serde_json::{json, Map, Value};

/// A run without its tasks.
pub fn run_summary(r: &RunRow) -> Value {
    json!({
        "id": r.id,
        "name": r.name,
        "queue": r.queue,
        "state": r.state.as_str(),
        "created_at_ms": r.created_at_ms,
        "finished_at_ms": r.finished_at_ms,
        "task_count": r.task_count,
        "counts": counts_map(&r.counts),
        "error": r.error,
        "last_seq": r.last_seq,
        "usage": r.usage,
        "budget": r.options.budget,
        "max_parallel": r.options.max_parallel,
        "created_by": r.created_by,
    })
}

/// A task: its spec and its current state.
pub fn task(t: &StoredTask, run_queue: &str, progress: Option<(Option<f64>, &str)>) -> Value {
    let s = &t.spec;
    let r = &t.row;
    json!({
        "id": r.task_id,
        "handler": s.handler,
        "queue": s.queue_or(run_queue),
        "input": s.input,
        "depends_on": s.depends_on,
        "trigger": s.trigger.as_str(),
        "retries": s.retries,
        "retry_backoff_s": s.retry_backoff_s,
        "timeout_s": s.timeout_s,
        "idle_timeout_s": s.idle_timeout_s,
        "priority": s.priority,
        "agent": s.agent,
        "parent": s.parent,
        "concurrency_key": s.concurrency_key,
        "budget": s.budget,
        "usage": r.usage,
        "state": r.state.as_str(),
        "attempt": r.attempt,
        "output": r.output,
        "error": r.error,
        "worker_id": r.worker_id,
        "queued_at_ms": r.queued_at_ms,
        "started_at_ms": r.started_at_ms,
        "finished_at_ms": r.finished_at_ms,
        "progress": progress.and_then(|p| p.0),
        "progress_message": progress.map(|p| p.1),
        "waiting_for": waiting_for(r.state.as_str(), r.error.as_ref().map(|e| e.kind.as_str())),
    })
}

/// What a waiting task waits for: `budget` (a raise) or `approval`; null when not waiting.
fn waiting_for(state: &str, error_kind: Option<&str>) -> Value {
    match (state, error_kind) {
        ("waiting", Some(crate::state_machine::AWAITING_BUDGET)) => "budget".into(),
        ("waiting", _) => "approval".into(),
        _ => Value::Null,
    }
}

/// A stored event.
pub fn event(e: &EventRow) -> Value {
    let mut m = Map::new();
    m.insert("seq".into(), e.seq.into());
    m.insert("run_id".into(), e.run_id.clone().into());
    m.insert("task_id".into(), e.task_id.clone().into());
    m.insert("kind".into(), e.kind.clone().into());
    m.insert("state".into(), e.state.clone().into());
    m.insert("attempt".into(), e.attempt.into());
    m.insert("at_ms".into(), e.at_ms.into());
    m.insert("worker_id".into(), e.worker_id.clone().into());
    // Only on events an API request caused: most events are workers' and the scheduler's.
    if let Some(by) = &e.by {
        m.insert("by".into(), by.clone().into());
    }
    if e.kind == "log" {
        let data = e.data.as_ref();
        let field = |k: &str| data.and_then(|d| d.get(k)).cloned().unwrap_or(Value::Null);
        m.insert("level".into(), field("level"));
        m.insert("message".into(), field("message"));
        m.insert("error".into(), Value::Null);
    } else {
        m.insert("error".into(), e.data.clone().unwrap_or(Value::Null));
        if e.state.as_deref() == Some("waiting") {
            let kind = e
                .data
                .as_ref()
                .and_then(|d| d.get("kind"))
                .and_then(Value::as_str);
            m.insert("reason".into(), waiting_for("waiting", kind));
        }
    }
    Value::Object(m)
}
