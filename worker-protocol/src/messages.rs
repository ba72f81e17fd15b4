//! Messages on Apex's Redis streams. Each stream entry holds one JSON object in its `m`
//! field; every object has `v` (the protocol version) and `type`.
//!
//! ```text
//! orchestrator ──TaskMessage──▶ {p}:queue:{name}   (group "workers")
//! worker ──WorkerMessage──▶ {p}:results             (group "orchestrator")
//! orchestrator ──ControlMessage──▶ {p}:control      (every worker follows it)
//! ```
//!
//! A task is identified by `(run_id, task_id)` and one try of it by `attempt` (from 1).
//! Results carry the attempt, so a stale or duplicate result is recognised and ignored.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// A task for a worker to run: one attempt of one task of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskMessage {
    /// Protocol version.
    pub v: u32,
    /// Always `"task"`.
    #[serde(rename = "type")]
    pub kind: TaskKind,
    pub run_id: String,
    pub task_id: String,
    /// 1 for the first try, incremented for each retry or re-dispatch.
    pub attempt: u32,
    /// Name of the handler the worker registered.
    pub handler: String,
    /// The task's own input, as submitted.
    pub input: Value,
    /// Output of each dependency, by dependency id.
    #[serde(default)]
    pub upstream: BTreeMap<String, Value>,
    pub queue: String,
    /// Wall-clock limit for this attempt; the worker fails the attempt when it passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<f64>,
    /// Stable per attempt (`run:task:attempt`): handlers pass it to external systems.
    pub idempotency_key: String,
    #[serde(default)]
    pub priority: i32,
    /// Milliseconds since the Unix epoch when the orchestrator enqueued it.
    pub enqueued_at_ms: i64,
    /// For tasks run by an agent (handler `agent`): its configuration, resolved by the
    /// orchestrator from the run's inline agents or the registered ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentConfig>,
    /// W3C trace context (`00-{trace}-{span}-{flags}`) whose parent is the attempt's
    /// span, present only when the orchestrator exports traces; a worker that traces
    /// continues it, any other ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// A named LLM agent: which provider and model, how it behaves, what it costs. How a
/// provider is reached (endpoint, key) is the worker operator's, never the message's.
/// Unknown fields are ignored, so a newer orchestrator can add some without older
/// workers dead-lettering every agent task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentConfig {
    pub name: String,
    /// The name of a provider the worker's operator declared (`--providers-file`).
    pub provider: String,
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u32>,
    /// Attempts of this agent running at once, across runs (enforced by the orchestrator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// Price in USD per million tokens; without it the worker's price table applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<Price>,
}

/// USD per million input and output tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Price {
    #[cfg_attr(feature = "openapi", schema(minimum = 0))]
    pub input_per_mtok: f64,
    #[cfg_attr(feature = "openapi", schema(minimum = 0))]
    pub output_per_mtok: f64,
}

/// Tokens and money used, as workers reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Usage {
    // Optional on the worker wire, always present in the API's answers.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub input_tokens: u64,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub output_tokens: u64,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub cost_usd: f64,
}

/// The `type` tag of a [`TaskMessage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    Task,
}

/// A message a worker sends to the orchestrator on the results stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkerMessage {
    /// The worker began an attempt. May be left out when the result follows at once:
    /// a result implies its start.
    Started(Started),
    /// The attempt ended.
    Result(TaskResult),
    /// A handler reported progress (`ctx.progress(0.4, "searching")`).
    Progress(Progress),
    /// A handler wrote a log line (`ctx.log("…")`).
    Log(LogLine),
    /// The worker gives an attempt back unfinished (it is draining or shutting down);
    /// the orchestrator queues the task again without counting a failure.
    Released(Released),
    /// Sent on start and every few seconds: who the worker is and how busy.
    Heartbeat(Heartbeat),
    /// The worker exited cleanly.
    WorkerStopped(WorkerStopped),
}

/// Identifies one attempt of one task, and where its task message came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRef {
    pub run_id: String,
    pub task_id: String,
    pub attempt: u32,
    pub worker_id: String,
    /// The queue the task message was read from.
    pub queue: String,
    /// Stream entry id of the task message, so the orchestrator can acknowledge it.
    pub msg_id: String,
}

/// See [`WorkerMessage::Started`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Started {
    pub v: u32,
    #[serde(flatten)]
    pub attempt: AttemptRef,
    pub at_ms: i64,
}

/// See [`WorkerMessage::Result`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    pub v: u32,
    #[serde(flatten)]
    pub attempt: AttemptRef,
    pub outcome: Outcome,
    /// The handler's return value (null when it failed).
    #[serde(default)]
    pub output: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<TaskError>,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    /// Tokens and cost the attempt used (LLM calls), whether it succeeded or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// New tasks to add to the run under this one (dynamic fan-out), in the submission
    /// format; their ids and dependencies are among themselves. Tasks that depended on
    /// this one wait for them too and receive their outputs.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_empty"
    )]
    pub children: Vec<Value>,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    Failed,
}

/// Why an attempt failed, and what the handler wants done about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskError {
    pub kind: ErrorKind,
    /// Exception class or error type, e.g. `ValueError`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceback: Option<String>,
    /// False when the handler said not to retry (e.g. a bad request to a provider).
    #[serde(default = "yes")]
    pub retryable: bool,
    /// The handler asks for the next attempt no sooner than this (e.g. a 429's Retry-After).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<f64>,
}

fn yes() -> bool {
    true
}

/// `null` reads as an empty list, like an absent field.
fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Value>, D::Error> {
    Ok(Option::<Vec<Value>>::deserialize(d)?.unwrap_or_default())
}

/// The class of a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The handler raised.
    Exception,
    /// The attempt ran past its `timeout_s`.
    Timeout,
    /// No handler of that name is registered on the worker.
    UnknownHandler,
    /// The attempt was cancelled.
    Cancelled,
    /// The worker running it was lost (crashed or stopped heartbeating).
    WorkerLost,
    /// The handler's output could not be encoded as JSON or was too large.
    InvalidOutput,
}

/// See [`WorkerMessage::Progress`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub v: u32,
    pub run_id: String,
    pub task_id: String,
    pub attempt: u32,
    pub worker_id: String,
    /// Fraction done in `[0, 1]`, when the handler knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<f64>,
    #[serde(default)]
    pub message: String,
    /// Text generated since the last progress report (streamed LLM tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_delta: Option<String>,
    /// What the attempt has used so far, as soon as the provider states it (so a call
    /// that bills and then stalls is still counted); the result's usage supersedes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    pub at_ms: i64,
}

/// See [`WorkerMessage::Log`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    pub v: u32,
    pub run_id: String,
    pub task_id: String,
    pub attempt: u32,
    pub worker_id: String,
    /// `debug`, `info`, `warning` or `error`.
    pub level: String,
    pub message: String,
    pub at_ms: i64,
}

/// See [`WorkerMessage::Released`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Released {
    pub v: u32,
    #[serde(flatten)]
    pub attempt: AttemptRef,
    pub reason: String,
    pub at_ms: i64,
}

/// See [`WorkerMessage::Heartbeat`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub v: u32,
    pub worker: WorkerInfo,
    pub at_ms: i64,
}

/// What a worker says about itself in each heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Unique per process; also its consumer name in the queue groups.
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub queues: Vec<String>,
    /// Size of its semaphore: how many attempts it runs at once.
    pub concurrency: u32,
    /// Attempts running now.
    pub in_flight: u32,
    /// Handlers it has registered.
    #[serde(default)]
    pub handlers: Vec<String>,
    /// Version of the `apex_worker` package.
    pub version: String,
    pub started_at_ms: i64,
    pub state: WorkerState,
    /// Seconds between heartbeats; the worker is presumed lost after a few missed ones.
    pub heartbeat_interval_s: f64,
}

/// Whether a worker takes new work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    Running,
    /// Takes no new work; finishes what it has, then exits.
    Draining,
}

/// See [`WorkerMessage::WorkerStopped`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerStopped {
    pub v: u32,
    pub worker_id: String,
    pub at_ms: i64,
}

/// A message from the orchestrator to workers on the control stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ControlMessage {
    /// Stop an attempt if this worker runs it: cancel the coroutine and free its slot.
    /// The worker then reports a result with error kind `cancelled`.
    Cancel {
        v: u32,
        run_id: String,
        task_id: String,
        attempt: u32,
    },
    /// The named worker (or every worker, for `"*"`) stops taking work, finishes its
    /// in-flight attempts and exits.
    Drain { v: u32, worker_id: String },
}

impl WorkerMessage {
    /// The protocol version the message claims.
    pub fn version(&self) -> u32 {
        match self {
            WorkerMessage::Started(m) => m.v,
            WorkerMessage::Result(m) => m.v,
            WorkerMessage::Progress(m) => m.v,
            WorkerMessage::Log(m) => m.v,
            WorkerMessage::Released(m) => m.v,
            WorkerMessage::Heartbeat(m) => m.v,
            WorkerMessage::WorkerStopped(m) => m.v,
        }
    }
}

impl TaskMessage {
    /// The idempotency key of an attempt: the same on every delivery of that attempt.
    pub fn idempotency_key_for(run_id: &str, task_id: &str, attempt: u32) -> String {
        format!("{run_id}:{task_id}:{attempt}")
    }
}
