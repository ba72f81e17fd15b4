//! Runs, tasks and events (`/api/v1/runs…`, `/api/v1/validate`).

use super::{AgentSpec, Budget, KeyLimit, RunState, TaskState, Trigger, Usage};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Tasks per state; every state is present.
pub type TaskCounts = BTreeMap<String, u32>;

/// A run without its tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunSummary {
    pub id: String,
    pub name: String,
    /// The run's default queue.
    pub queue: String,
    pub state: RunState,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// Milliseconds since the Unix epoch; null while running.
    #[schema(required = true)]
    pub finished_at_ms: Option<i64>,
    pub task_count: u32,
    /// Tasks per state (every state is present).
    #[schema(schema_with = super::states::task_counts_schema)]
    pub counts: TaskCounts,
    /// Why a failed run failed: the tasks that failed, or, when its budget ran out,
    /// `budget exceeded: the run's …`.
    #[schema(required = true)]
    pub error: Option<String>,
    /// Sequence number of the run's last stored event.
    pub last_seq: u64,
    /// What the run's tasks reported using so far.
    pub usage: Usage,
    /// The run's budget as submitted; null without one.
    #[schema(required = true)]
    pub budget: Option<Budget>,
    /// As submitted; null without one.
    #[schema(required = true, minimum = 1)]
    pub max_parallel: Option<u32>,
    /// The token that submitted it; null for runs stored before tokens had names.
    #[schema(required = true)]
    pub created_by: Option<String>,
    /// The template (and its version) the run was made from; null otherwise.
    #[schema(required = true)]
    pub template: Option<crate::dag::origin::TemplateRef>,
    /// The schedule that started the run; null otherwise.
    #[schema(required = true)]
    pub schedule: Option<String>,
    /// The schedule tick (ms since the Unix epoch) the run is for; null otherwise.
    #[schema(required = true)]
    pub schedule_tick_ms: Option<i64>,
    /// The webhook that started the run; null otherwise.
    #[schema(required = true)]
    pub hook: Option<String>,
    /// Seconds after finishing when the run is deleted; null: the server's retention.
    #[schema(required = true)]
    pub ttl_s: Option<u64>,
    /// The run this one re-ran (`POST /runs/{id}/rerun`) and the tasks it re-ran from;
    /// null for other runs.
    #[schema(required = true)]
    pub rerun_of: Option<RerunLink>,
}

/// The run a re-run re-ran, and the tasks it re-ran from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RerunLink {
    pub run: String,
    pub from: Vec<String>,
}

/// A run as `GET /api/v1/runs/{id}` answers it: its summary, its own history and, unless
/// `?tasks=false`, its agents, limits and tasks (at most `--max-inline-tasks` of them;
/// `tasks_next_after` then continues with `GET /api/v1/runs/{id}/tasks`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Run {
    #[serde(flatten)]
    pub summary: RunSummary,
    /// The run's own transitions with who caused them: created, cancelled, retried.
    pub history: Vec<Event>,
    /// The agents the run was submitted with (registered ones resolved). Absent with
    /// `?tasks=false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agents: Option<BTreeMap<String, AgentSpec>>,
    /// The run's concurrency limits as submitted. Absent with `?tasks=false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_limits: Option<BTreeMap<String, KeyLimit>>,
    /// The run's tasks in id order. Absent with `?tasks=false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<Vec<Task>>,
    /// Present when `tasks` is not all of them: the `after` cursor of the next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks_next_after: Option<String>,
}

/// A page of runs, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunList {
    pub runs: Vec<RunSummary>,
    /// The `before` of the next page; null on the last.
    #[schema(required = true)]
    pub next: Option<String>,
}

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskError {
    /// `exception`, `timeout`, `cancelled`, `worker_lost`, `unknown_handler`,
    /// `upstream_failed`, `budget_exceeded` (a task or run budget cannot cover the task;
    /// it never ran), `invalid_children` (the handler spawned invalid tasks; not
    /// retried), …
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceback: Option<String>,
}

/// A task: its spec (defaults filled in) and its current state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Task {
    pub id: String,
    pub handler: String,
    /// The task's queue, or the run's when it names none.
    pub queue: String,
    /// Any JSON value.
    pub input: Value,
    pub depends_on: Vec<String>,
    pub trigger: Trigger,
    pub retries: u32,
    #[schema(required = true)]
    pub retry_backoff_s: Option<f64>,
    #[schema(required = true)]
    pub timeout_s: Option<f64>,
    #[schema(required = true)]
    pub idle_timeout_s: Option<f64>,
    pub priority: i32,
    /// The agent that runs it, by name (see the run's `agents`).
    #[schema(required = true)]
    pub agent: Option<String>,
    /// On a task a handler spawned: the id of the task that spawned it.
    #[schema(required = true)]
    pub parent: Option<String>,
    #[schema(required = true)]
    pub concurrency_key: Option<String>,
    /// The task's budget as submitted; null without one.
    #[schema(required = true)]
    pub budget: Option<Budget>,
    /// What its attempts reported using.
    pub usage: Usage,
    pub state: TaskState,
    /// The current or last attempt, from 1; 0 before the first.
    pub attempt: u32,
    /// What the handler returned, once it succeeded.
    #[schema(required = true)]
    pub output: Option<Value>,
    #[schema(required = true)]
    pub error: Option<TaskError>,
    #[schema(required = true)]
    pub worker_id: Option<String>,
    #[schema(required = true)]
    pub queued_at_ms: Option<i64>,
    #[schema(required = true)]
    pub started_at_ms: Option<i64>,
    #[schema(required = true)]
    pub finished_at_ms: Option<i64>,
    /// The last progress a running attempt reported, 0..1; null otherwise.
    #[schema(required = true)]
    pub progress: Option<f64>,
    /// The message of that progress report.
    #[schema(required = true)]
    pub progress_message: Option<String>,
    /// In a run made by a re-run: the run whose output this task reused (it did not run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reused_from: Option<String>,
    /// What a `waiting` task waits for: `approval` (a decision) or `budget` (a raise);
    /// null when it is not waiting.
    #[schema(required = true, schema_with = super::states::waiting_for_schema)]
    pub waiting_for: Option<String>,
}

/// A task of a run, as a decision about it (approve, reject, cancel) left it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DecidedTask {
    #[serde(flatten)]
    pub task: Task,
    pub run_id: String,
}

/// A task with what explains it: its upstream outputs, attempts and log lines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskDetail {
    #[serde(flatten)]
    pub task: Task,
    pub run_id: String,
    /// The output of each dependency, by task id (null when it has none).
    pub upstream: BTreeMap<String, Value>,
    pub attempts: Vec<Attempt>,
    pub logs: Vec<LogLine>,
    /// The task's other events (state changes), oldest first.
    pub events: Vec<Event>,
}

/// One attempt of a task, rebuilt from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Attempt {
    pub attempt: u32,
    #[schema(required = true)]
    pub worker_id: Option<String>,
    #[schema(required = true)]
    pub queued_at_ms: Option<i64>,
    #[schema(required = true)]
    pub started_at_ms: Option<i64>,
    #[schema(required = true)]
    pub finished_at_ms: Option<i64>,
    /// `succeeded`, `failed` or `cancelled`; null while in flight.
    #[schema(required = true)]
    pub outcome: Option<String>,
    #[schema(required = true)]
    pub error: Option<TaskError>,
}

/// A log line a handler wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LogLine {
    pub at_ms: i64,
    pub attempt: u32,
    #[schema(required = true)]
    pub level: Option<String>,
    #[schema(required = true)]
    pub message: Option<String>,
}

/// A stored event with its per-run sequence number. `kind` is `task` (a task changed
/// state; `task_id` and `state` set), `run` (the run changed state; `task_id` null,
/// `state` is the run's) or `log` (`level` and `message` set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    #[schema(minimum = 1)]
    pub seq: u64,
    pub run_id: String,
    #[schema(required = true)]
    pub task_id: Option<String>,
    /// `task`, `run` or `log`.
    #[schema(schema_with = super::states::event_kind_schema)]
    pub kind: String,
    /// A TaskState for `task` events, a RunState for `run` events, null for `log`.
    #[schema(required = true)]
    pub state: Option<String>,
    pub attempt: u32,
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
    #[schema(required = true)]
    pub worker_id: Option<String>,
    /// The failure a `task` event records; null otherwise.
    #[schema(required = true)]
    pub error: Option<TaskError>,
    /// `log` events only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// `log` events only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// On a `waiting` event: what the task waits for, `approval` or `budget`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Present on events an API request caused (submit, cancel, retry): the token that
    /// made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Live (WebSocket) events only: when the server committed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_at_ms: Option<i64>,
}

/// A run's events in sequence order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EventList {
    pub events: Vec<Event>,
}

/// A page of a run's tasks in id order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskPage {
    pub tasks: Vec<Task>,
    /// The `after` of the next page; null on the last.
    #[schema(required = true)]
    pub next_after: Option<String>,
    /// The run's change cursor as this page began to be read. The first page's, passed
    /// as `since` next time, answers only the tasks that changed after this read began.
    pub next_since: u64,
}

/// The answer of `POST /api/v1/validate` for a DAG that would be accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Validation {
    pub valid: bool,
    /// Tasks in the DAG.
    pub tasks: u32,
}
