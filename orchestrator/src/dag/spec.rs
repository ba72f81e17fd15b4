//! The DAG a user submits, as JSON. Unknown fields are rejected, not ignored.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::ToSchema;
pub use worker_protocol::{AgentConfig, Price};

/// A run as submitted: a name, a default queue and its tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    #[serde(default = "default_name")]
    #[schema(min_length = 1, max_length = 256, default = "run")]
    pub name: String,
    /// Queue for tasks that name none.
    #[serde(default = "default_queue")]
    #[schema(pattern = r"^[A-Za-z0-9_.:-]{1,128}$", default = "default")]
    pub queue: String,
    /// At most 100,000 by default (`--max-tasks`).
    #[schema(min_items = 1)]
    pub tasks: Vec<TaskSpec>,
    /// Agents defined for this run, by name; they win over registered agents.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub agents: BTreeMap<String, AgentSpec>,
    /// Tokens and money the whole run may spend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
    /// Most of this run's tasks queued or running at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 4_294_967_295_i64)]
    pub max_parallel: Option<u32>,
    /// Limits per concurrency key (a task's `concurrency_key`), counted across every
    /// run that uses the key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub concurrency_limits: BTreeMap<String, KeyLimit>,
    /// Seconds the run is kept once finished, instead of `--retain-finished-days`; at
    /// most ten years (`api::daily::MAX_TTL_S`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 316_224_000_i64)]
    pub ttl_s: Option<u64>,
}

/// Which run a re-run came from, and what it took from it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RerunOf {
    /// The run it re-ran.
    pub run: String,
    /// The tasks it re-ran from, as asked.
    pub from: Vec<String>,
    /// Tasks whose outputs it took from `run` instead of running them.
    #[serde(default)]
    pub reused: Vec<String>,
}

/// What a concurrency key allows: attempts in flight at once, requests and tokens per
/// minute. Unset parts do not limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyLimit {
    /// Attempts in flight (queued or running) at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 4_294_967_295_i64)]
    pub max_concurrency: Option<u32>,
    /// Attempts dispatched per rolling minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 4_294_967_295_i64)]
    pub rpm: Option<u32>,
    /// Tokens (input + output) per rolling minute: estimated at dispatch, then corrected
    /// by what the attempt reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    pub tpm: Option<u64>,
}

/// What a run sets besides its tasks: agents, budget and limits. Stored with the run,
/// so a recovered run keeps the agents it was submitted with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunOptions {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub agents: BTreeMap<String, AgentSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<u32>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub concurrency_limits: BTreeMap<String, KeyLimit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_s: Option<u64>,
    /// Where the run came from (template, schedule tick, webhook, idempotency key): set
    /// by the server after validation, never by a submitter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<super::origin::RunOrigin>,
    /// Set by the orchestrator on a run made by `POST /runs/{id}/rerun`; never read
    /// from a submission (a [`RunSpec`] has no such field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerun_of: Option<RerunOf>,
}

impl RunSpec {
    /// A spec from its parts.
    pub fn from_parts(name: String, queue: String, tasks: Vec<TaskSpec>, o: RunOptions) -> Self {
        Self {
            name,
            queue,
            tasks,
            agents: o.agents,
            budget: o.budget,
            max_parallel: o.max_parallel,
            concurrency_limits: o.concurrency_limits,
            ttl_s: o.ttl_s,
        }
    }
}

/// An agent as written in a DAG or registered over REST: an [`AgentConfig`] without its
/// name, which is the key it is filed under.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    /// The name of a provider the operator declared (`--providers-file`).
    pub provider: String,
    pub model: String,
    /// Refused when present: endpoints belong to the operator. Accepted by the parser
    /// only so the refusal is a 422 that says why, not a generic unknown field.
    #[serde(default, skip_serializing)]
    #[schema(ignore)]
    pub base_url: Option<serde_json::Value>,
    /// Refused when present, like `base_url`: keys belong to the operator.
    #[serde(default, skip_serializing)]
    #[schema(ignore)]
    pub api_key_env: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 2)]
    pub temperature: Option<f64>,
    /// Most tokens one answer may have; also what a budget reserves for each attempt's
    /// output (1024 when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 4_294_967_295_i64)]
    pub max_output_tokens: Option<u32>,
    /// Attempts of tasks using this agent in flight at once, across every run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 4_294_967_295_i64)]
    pub max_concurrency: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<Price>,
}

impl AgentSpec {
    /// The configuration sent to workers with each task of this agent.
    pub fn config(&self, name: &str) -> AgentConfig {
        AgentConfig {
            name: name.to_owned(),
            provider: self.provider.clone(),
            model: self.model.clone(),
            system_prompt: self.system_prompt.clone(),
            temperature: self.temperature,
            max_output_tokens: self.max_output_tokens,
            max_concurrency: self.max_concurrency,
            price: self.price,
        }
    }
}

/// A spending limit: tokens (input + output) and US dollars.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 9_223_372_036_854_775_807_i64)]
    pub max_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    pub max_cost_usd: Option<f64>,
    /// What happens when the budget cannot cover a task: `fail` (the default) or `ask`
    /// (the task waits for a person to raise the budget or reject).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_exceeded: Option<OnExceeded>,
}

/// What a budget does when it cannot cover the next task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnExceeded {
    /// The task fails (a task budget) or the run stops dispatching (a run budget).
    #[default]
    Fail,
    /// The task waits for a person: a raise lets it go on, a rejection fails as `fail`.
    Ask,
}

impl Budget {
    /// True when this budget asks a person instead of failing.
    pub fn asks(&self) -> bool {
        self.on_exceeded == Some(OnExceeded::Ask)
    }
}

/// One task of a submitted run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// Unique within the run.
    #[schema(pattern = r"^[A-Za-z0-9_.:-]{1,128}$")]
    pub id: String,
    /// Name of the handler a worker runs.
    #[schema(pattern = r"^[A-Za-z0-9_.:-]{1,128}$")]
    pub handler: String,
    #[serde(default)]
    pub input: Value,
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Defaults to the run's queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^[A-Za-z0-9_.:-]{1,128}$")]
    pub queue: Option<String>,
    /// Further attempts after a failed one.
    #[serde(default)]
    #[schema(maximum = 100)]
    pub retries: u32,
    /// Base of the exponential backoff between attempts; 1.0 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 86400)]
    pub retry_backoff_s: Option<f64>,
    /// Fails an attempt that runs longer than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(exclusive_minimum = 0)]
    pub timeout_s: Option<f64>,
    /// Fails a running attempt that reports no progress (started, progress, log) for
    /// this long: a hung call, told apart from a slow one that is still talking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(exclusive_minimum = 0)]
    pub idle_timeout_s: Option<f64>,
    #[serde(default)]
    pub priority: i32,
    #[serde(default)]
    pub trigger: Trigger,
    /// The agent that runs this task (handler `agent`), by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^[A-Za-z0-9_.:-]{1,128}$")]
    pub agent: Option<String>,
    /// Tokens and money this task's attempts may spend together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
    /// Tasks sharing a key share its limit in `concurrency_limits` (e.g. `provider:openai`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^[A-Za-z0-9_.:-]{1,128}$")]
    pub concurrency_key: Option<String>,
    /// Set by the orchestrator on tasks a handler spawned: the task that spawned it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

/// When a task whose dependencies are all finished may run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// Only if every dependency succeeded; otherwise the task is skipped.
    #[default]
    AllSuccess,
    /// Once every dependency is finished, whatever the outcome.
    AllDone,
}

impl Trigger {
    /// The name used on the wire and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::AllSuccess => "all_success",
            Trigger::AllDone => "all_done",
        }
    }
}

/// Default backoff base when a task sets retries but no `retry_backoff_s`.
pub const DEFAULT_RETRY_BACKOFF_S: f64 = 1.0;

fn default_name() -> String {
    "run".to_owned()
}

fn default_queue() -> String {
    "default".to_owned()
}

impl TaskSpec {
    /// The queue this task goes to, given its run's default.
    pub fn queue_or<'a>(&'a self, run_queue: &'a str) -> &'a str {
        self.queue.as_deref().unwrap_or(run_queue)
    }
}
