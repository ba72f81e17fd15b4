//! What a person decides about one task of a running run (approve, reject, cancel),
//! turned into stimuli of its [`RunMachine`].

use crate::state_machine::{Output, Rejected, RunMachine};
use serde_json::{json, Value};

/// A person's decision about one task.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The waiting task succeeds with `{"approved": true, "comment", "by", "output"}`.
    Approve {
        comment: Option<String>,
        output: Option<Value>,
    },
    /// The waiting task fails with error kind `rejected`.
    Reject { comment: Option<String> },
    /// The task is cancelled, whatever its state.
    Cancel,
}

/// Applies `decision` of token `by` to task `i`.
pub(super) fn apply(
    m: &mut RunMachine,
    i: u32,
    decision: Decision,
    by: &str,
    now_ms: i64,
    out: &mut Output,
) -> Result<(), Rejected> {
    match decision {
        Decision::Approve { comment, output } => {
            let output = json!({"approved": true, "comment": comment, "by": by, "output": output});
            m.approve(i, output, now_ms, out)
        }
        Decision::Reject { comment } => {
            let message = match comment {
                Some(c) => format!("rejected by {by}: {c}"),
                None => format!("rejected by {by}"),
            };
            m.reject(i, message, now_ms, out)
        }
        Decision::Cancel => m.cancel_task(i, now_ms, out),
    }
}

/// Why a decision does not fit the task, for a 409.
pub(super) fn conflict(run_id: &str, task_id: &str, e: Rejected) -> String {
    match e {
        Rejected::NotWaiting(state) => {
            format!("task {task_id:?} of run {run_id} is {state}, not waiting for a decision")
        }
        Rejected::AlreadyFinal(state) => {
            format!("task {task_id:?} of run {run_id} is already {state}")
        }
        Rejected::RunFinished(state) => format!("run {run_id} is already {state}"),
        other => other.to_string(),
    }
}
