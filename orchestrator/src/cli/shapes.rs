//! What the CLI asks of the API's own types ([`crate::api_types`]): the server renders
//! them and the CLI reads the same structs, so there is one definition per shape. This
//! module only adds the readings people need (one-line errors, counts, usage sums).
//! `--json` output never goes through these types; it is the server's JSON as it came.

pub use crate::api_types::{Event, Run, RunSummary, Task, TaskDetail, TaskError, TaskState, Usage};
use serde_json::Value;

/// Task states that are final, as the API spells them.
const TERMINAL: [&str; 4] = ["succeeded", "failed", "cancelled", "skipped"];

/// Readings of [`Usage`] (a type of `worker-protocol`, so the methods live on a trait).
pub trait UsageExt {
    /// Whether there is anything to show: some tokens or some cost.
    fn is_zero(&self) -> bool;
    /// Input and output tokens together.
    fn tokens(&self) -> u64;
}

impl UsageExt for Usage {
    fn is_zero(&self) -> bool {
        self.input_tokens == 0 && self.output_tokens == 0 && self.cost_usd <= 0.0
    }

    fn tokens(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }
}

/// The sum of some usages.
pub fn sum_usage<'a>(usages: impl IntoIterator<Item = &'a Usage>) -> Usage {
    usages.into_iter().fold(Usage::default(), |t, u| Usage {
        input_tokens: t.input_tokens + u.input_tokens,
        output_tokens: t.output_tokens + u.output_tokens,
        cost_usd: t.cost_usd + u.cost_usd,
    })
}

impl RunSummary {
    /// Tasks in the given state.
    pub fn count(&self, state: &str) -> u64 {
        self.counts.get(state).copied().map_or(0, u64::from)
    }

    /// Tasks in a terminal state.
    pub fn done(&self) -> u64 {
        TERMINAL.iter().map(|s| self.count(s)).sum()
    }
}

impl TaskError {
    /// One line: `ValueError: bad input`, or the kind when there is no exception type.
    pub fn one_line(&self) -> String {
        let what = self.error_type.as_deref().unwrap_or(&self.kind);
        match self.message.lines().next() {
            Some(m) if !m.is_empty() => format!("{what}: {m}"),
            _ => what.to_owned(),
        }
    }
}

/// Reads `T` out of an answer, or says the server answered something unexpected.
pub fn parse<T: serde::de::DeserializeOwned>(v: &Value, what: &str) -> Result<T, String> {
    T::deserialize(v).map_err(|e| format!("unexpected {what} in the answer: {e}"))
}

/// Whole API documents for unit tests, from the few fields a test cares about: each
/// helper lays the given fields over a complete default, as the server would send it.
#[cfg(test)]
pub mod fixtures {
    use super::*;
    use serde_json::json;

    fn over(mut base: Value, fields: Value) -> Value {
        if let (Some(b), Value::Object(f)) = (base.as_object_mut(), fields) {
            b.extend(f);
        }
        base
    }

    /// A task document: `{"id": …}` plus whatever the test sets.
    pub fn task_json(fields: Value) -> Value {
        over(
            json!({
                "id": "t", "handler": "echo", "queue": "default", "input": null,
                "depends_on": [], "trigger": "all_success", "retries": 0,
                "retry_backoff_s": null, "timeout_s": null, "idle_timeout_s": null,
                "priority": 0, "agent": null, "parent": null, "concurrency_key": null,
                "budget": null, "usage": {"input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0},
                "state": "pending", "attempt": 0, "output": null, "error": null,
                "worker_id": null, "queued_at_ms": null, "started_at_ms": null,
                "finished_at_ms": null, "progress": null, "progress_message": null,
                "waiting_for": null
            }),
            fields,
        )
    }

    /// A task.
    pub fn task(fields: Value) -> Task {
        serde_json::from_value(task_json(fields)).expect("a task fixture")
    }

    /// Tasks from an array of partial task documents.
    pub fn tasks(fields: Value) -> Vec<Task> {
        match fields {
            Value::Array(a) => a.into_iter().map(task).collect(),
            other => panic!("tasks fixture wants an array, got {other}"),
        }
    }

    /// A run summary document.
    pub fn summary_json(fields: Value) -> Value {
        over(
            json!({
                "id": "r_1", "name": "run", "queue": "default", "state": "running",
                "created_at_ms": 0, "finished_at_ms": null, "task_count": 0, "counts": {},
                "error": null, "last_seq": 0,
                "usage": {"input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0},
                "budget": null, "max_parallel": null, "created_by": null, "template": null,
                "schedule": null, "schedule_tick_ms": null, "hook": null, "ttl_s": null,
                "rerun_of": null
            }),
            fields,
        )
    }

    /// A run summary.
    pub fn summary(fields: Value) -> RunSummary {
        serde_json::from_value(summary_json(fields)).expect("a run summary fixture")
    }

    /// A run with its tasks (partial task documents under `tasks`) and history.
    pub fn run(mut fields: Value) -> Run {
        let tasks: Vec<Value> = match fields.get_mut("tasks").map(Value::take) {
            Some(Value::Array(a)) => a.into_iter().map(task_json).collect(),
            _ => Vec::new(),
        };
        let history: Vec<Value> = match fields.get_mut("history").map(Value::take) {
            Some(Value::Array(a)) => a.into_iter().map(event_json).collect(),
            _ => Vec::new(),
        };
        let mut body = summary_json(fields);
        body["tasks"] = Value::Array(tasks);
        body["history"] = Value::Array(history);
        serde_json::from_value(body).expect("a run fixture")
    }

    /// A stored event document.
    pub fn event_json(fields: Value) -> Value {
        over(
            json!({
                "seq": 1, "run_id": "r_1", "task_id": null, "kind": "task", "state": null,
                "attempt": 0, "at_ms": 0, "worker_id": null, "error": null
            }),
            fields,
        )
    }

    /// A stored event.
    pub fn event(fields: Value) -> Event {
        serde_json::from_value(event_json(fields)).expect("an event fixture")
    }
}
