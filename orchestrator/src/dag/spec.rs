//! The DAG a user submits, as JSON. Unknown fields are rejected, not ignored.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A run as submitted: a name, a default queue and its tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    #[serde(default = "default_name")]
    pub name: String,
    /// Queue for tasks that name none.
    #[serde(default = "default_queue")]
    pub queue: String,
    pub tasks: Vec<TaskSpec>,
}

/// One task of a submitted run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    pub id: String,
    pub handler: String,
    #[serde(default)]
    pub input: Value,
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Defaults to the run's queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Further attempts after a failed one.
    #[serde(default)]
    pub retries: u32,
    /// Base of the exponential backoff between attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_backoff_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<f64>,
    /// Fails a running attempt that reports no progress (started, progress, log) for
    /// this long: a hung call, told apart from a slow one that is still talking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_s: Option<f64>,
    #[serde(default)]
    pub priority: i32,
    #[serde(default)]
    pub trigger: Trigger,
}

/// When a task whose dependencies are all finished may run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
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
