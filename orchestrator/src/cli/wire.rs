//! The API's JSON (docs/API.md) as the CLI reads it for people. Lenient on purpose:
//! every field the CLI does not need to function has a default, so a newer server that
//! adds fields, or leaves one out, still prints. `--json` output never goes through these
//! types; it is the server's JSON as it came.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The `error` object of every 4xx/5xx answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<ErrorDetail>,
}

/// One problem of an invalid DAG or agent. Read leniently (a bare string, or an object
/// without a code, still reads), so a detail the server gives is never lost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "DetailAsSent")]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<String>,
}

/// The shapes an [`ErrorDetail`] is read from.
#[derive(Deserialize)]
#[serde(untagged)]
enum DetailAsSent {
    Object {
        #[serde(default)]
        code: Option<String>,
        #[serde(default)]
        field: Option<String>,
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        tasks: Vec<String>,
    },
    Text(String),
}

impl From<DetailAsSent> for ErrorDetail {
    fn from(d: DetailAsSent) -> Self {
        match d {
            DetailAsSent::Object {
                code,
                field,
                message,
                tasks,
            } => ErrorDetail {
                code: code.or(field).unwrap_or_else(|| "invalid".into()),
                message: message.unwrap_or_default(),
                tasks,
            },
            DetailAsSent::Text(message) => ErrorDetail {
                code: "invalid".into(),
                message,
                tasks: Vec::new(),
            },
        }
    }
}

/// A run without its tasks.
#[derive(Debug, Clone, Deserialize)]
pub struct RunSummary {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub created_at_ms: Option<i64>,
    #[serde(default)]
    pub finished_at_ms: Option<i64>,
    #[serde(default)]
    pub task_count: u64,
    #[serde(default)]
    pub counts: BTreeMap<String, u64>,
    #[serde(default)]
    pub error: Option<Value>,
    #[serde(default)]
    pub last_seq: u64,
    /// Tokens and cost over the run's tasks; absent from servers without agents.
    #[serde(default)]
    pub usage: Option<Usage>,
    /// The API token that submitted it; absent from servers without scoped tokens.
    #[serde(default)]
    pub created_by: Option<String>,
}

impl RunSummary {
    /// Tasks in the given state.
    pub fn count(&self, state: &str) -> u64 {
        self.counts.get(state).copied().unwrap_or(0)
    }

    /// Tasks in a terminal state.
    pub fn done(&self) -> u64 {
        ["succeeded", "failed", "cancelled", "skipped"]
            .iter()
            .map(|s| self.count(s))
            .sum()
    }
}

/// A run with every task.
#[derive(Debug, Clone, Deserialize)]
pub struct Run {
    #[serde(flatten)]
    pub summary: RunSummary,
    #[serde(default)]
    pub tasks: Vec<Task>,
    /// The run's own events (created, cancelled, retried), with who caused each.
    #[serde(default)]
    pub history: Vec<Event>,
}

/// A task: its spec and its current state.
#[derive(Debug, Clone, Deserialize)]
pub struct Task {
    pub id: String,
    #[serde(default)]
    pub handler: String,
    #[serde(default)]
    pub queue: String,
    #[serde(default)]
    pub input: Value,
    #[serde(default)]
    pub depends_on: Vec<String>,
    #[serde(default)]
    pub trigger: String,
    #[serde(default)]
    pub retries: u32,
    #[serde(default)]
    pub timeout_s: Option<f64>,
    #[serde(default)]
    pub priority: i64,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub attempt: u32,
    #[serde(default)]
    pub output: Value,
    #[serde(default)]
    pub error: Option<TaskError>,
    #[serde(default)]
    pub worker_id: Option<String>,
    #[serde(default)]
    pub queued_at_ms: Option<i64>,
    #[serde(default)]
    pub started_at_ms: Option<i64>,
    #[serde(default)]
    pub finished_at_ms: Option<i64>,
    #[serde(default)]
    pub progress: Option<f64>,
    #[serde(default)]
    pub progress_message: Option<String>,
    /// The agent that runs the task (the `agent` handler only).
    #[serde(default)]
    pub agent: Option<String>,
    /// The task that spawned this one (dynamic fan-out); its id is `PARENT.CHILD`.
    #[serde(default)]
    pub parent: Option<String>,
    /// Tokens and cost, summed over the task's attempts.
    #[serde(default)]
    pub usage: Option<Usage>,
}

/// LLM tokens and their price in US dollars.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub cost_usd: f64,
}

impl Usage {
    /// Whether there is anything to show: some tokens or some cost.
    pub fn is_zero(&self) -> bool {
        self.input_tokens == 0 && self.output_tokens == 0 && self.cost_usd <= 0.0
    }

    pub fn tokens(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }

    /// The sum of some usages; missing ones count as zero.
    pub fn sum<'a>(usages: impl IntoIterator<Item = Option<&'a Usage>>) -> Usage {
        usages
            .into_iter()
            .flatten()
            .fold(Usage::default(), |t, u| Usage {
                input_tokens: t.input_tokens + u.input_tokens,
                output_tokens: t.output_tokens + u.output_tokens,
                cost_usd: t.cost_usd + u.cost_usd,
            })
    }
}

/// Why an attempt or a task failed.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TaskError {
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub error_type: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub traceback: Option<String>,
}

impl TaskError {
    /// One line: `ValueError: bad input`, or the kind when there is no exception type.
    pub fn one_line(&self) -> String {
        let what = self
            .error_type
            .as_deref()
            .or(self.kind.as_deref())
            .unwrap_or("error");
        match self.message.as_deref() {
            Some(m) if !m.is_empty() => format!("{what}: {}", first_line(m)),
            _ => what.to_owned(),
        }
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// A task with its upstream outputs, attempts and logs.
#[derive(Debug, Clone, Deserialize)]
pub struct TaskDetail {
    #[serde(flatten)]
    pub task: Task,
    #[serde(default)]
    pub run_id: String,
    #[serde(default)]
    pub upstream: BTreeMap<String, Value>,
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    #[serde(default)]
    pub logs: Vec<LogLine>,
}

/// One attempt of a task.
#[derive(Debug, Clone, Deserialize)]
pub struct Attempt {
    pub attempt: u32,
    #[serde(default)]
    pub worker_id: Option<String>,
    #[serde(default)]
    pub queued_at_ms: Option<i64>,
    #[serde(default)]
    pub started_at_ms: Option<i64>,
    #[serde(default)]
    pub finished_at_ms: Option<i64>,
    #[serde(default)]
    pub outcome: Option<String>,
    #[serde(default)]
    pub error: Option<TaskError>,
}

/// A line a handler logged.
#[derive(Debug, Clone, Deserialize)]
pub struct LogLine {
    #[serde(default)]
    pub attempt: u32,
    #[serde(default)]
    pub level: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub at_ms: Option<i64>,
}

/// A worker process.
#[derive(Debug, Clone, Deserialize)]
pub struct Worker {
    pub id: String,
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub pid: Option<u64>,
    #[serde(default)]
    pub queues: Vec<String>,
    #[serde(default)]
    pub concurrency: u64,
    #[serde(default)]
    pub in_flight: u64,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub last_heartbeat_ms: Option<i64>,
}

/// A queue's depth and the work in flight on it.
#[derive(Debug, Clone, Deserialize)]
pub struct Queue {
    pub name: String,
    #[serde(default)]
    pub depth: u64,
    #[serde(default)]
    pub running: u64,
    #[serde(default)]
    pub workers_active: u64,
    #[serde(default)]
    pub workers_desired: Option<u64>,
}

/// An agent in the registry: its spec, its name and when it was registered and changed.
#[derive(Debug, Clone, Deserialize)]
pub struct Agent {
    pub name: String,
    #[serde(default)]
    pub provider: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub system_prompt: Option<String>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub max_output_tokens: Option<u64>,
    #[serde(default)]
    pub max_concurrency: Option<u64>,
    #[serde(default)]
    pub price: Option<Price>,
    #[serde(default)]
    pub created_at_ms: Option<i64>,
    #[serde(default)]
    pub updated_at_ms: Option<i64>,
}

/// An API token as listed: never its secret.
#[derive(Debug, Clone, Deserialize)]
pub struct Token {
    pub name: String,
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub created_by: String,
    #[serde(default)]
    pub created_at_ms: Option<i64>,
    #[serde(default)]
    pub last_used_at_ms: Option<i64>,
}

/// What an agent's model costs, in US dollars per million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
pub struct Price {
    #[serde(default)]
    pub input_per_mtok: f64,
    #[serde(default)]
    pub output_per_mtok: f64,
}

/// An event on a run's live stream: stored ones carry `seq`, live-only ones do not.
#[derive(Debug, Clone, Deserialize)]
pub struct Event {
    #[serde(default)]
    pub seq: Option<u64>,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub task_id: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub attempt: u32,
    #[serde(default)]
    pub at_ms: Option<i64>,
    #[serde(default)]
    pub worker_id: Option<String>,
    /// A task event's error; other kinds may carry other data here.
    #[serde(default)]
    pub error: Value,
    /// `progress` events: the fraction done, when the handler gave one.
    #[serde(default)]
    pub progress: Option<f64>,
    /// The API token whose request caused the event, when one did.
    #[serde(default)]
    pub by: Option<String>,
}

impl Event {
    /// The error of a failed attempt, when the event carries one.
    pub fn task_error(&self) -> Option<TaskError> {
        match &self.error {
            Value::Object(_) => TaskError::deserialize(&self.error).ok(),
            _ => None,
        }
    }
}

/// Reads `T` out of an answer, or says the server answered something unexpected.
pub fn parse<T: serde::de::DeserializeOwned>(v: &Value, what: &str) -> Result<T, String> {
    T::deserialize(v).map_err(|e| format!("unexpected {what} in the answer: {e}"))
}
