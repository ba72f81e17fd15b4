//! What a person decides about one task of a running run (approve, reject, cancel),
//! turned into stimuli of its [`RunMachine`].

use super::core::Core;
use super::EngineError;
use crate::dag::Budget;
use crate::state_machine::{Output, Rejected, RunMachine};
use serde_json::{json, Value};
use std::cmp::Reverse;
use std::sync::Arc;

/// A person's decision about one task.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The waiting task succeeds with `{"approved": true, "comment", "by", "output"}`.
    Approve {
        comment: Option<String>,
        output: Option<Value>,
        /// For a task waiting on a budget: the limits to raise it to.
        raise: Option<Budget>,
    },
    /// The waiting task fails with error kind `rejected`.
    Reject { comment: Option<String> },
    /// The task is cancelled, whatever its state.
    Cancel,
}

/// Applies `decision` of token `by` to task `i`.
fn apply(
    m: &mut RunMachine,
    i: u32,
    decision: Decision,
    by: &str,
    now_ms: i64,
    out: &mut Output,
) -> Result<(), Rejected> {
    match decision {
        Decision::Approve {
            raise: Some(raise), ..
        } => m.raise_budget(i, &raise, now_ms, out),
        Decision::Approve {
            comment, output, ..
        } => {
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
fn conflict(run_id: &str, task_id: &str, e: Rejected) -> String {
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

/// A waiting task's decision deadline, due at `due_ms` (engine clock). Ordered by due
/// time first, so a min-heap (`Reverse<Deadline>`) pops the earliest.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Deadline {
    pub due_ms: i64,
    pub run: Arc<str>,
    pub task: u32,
}

impl Core {
    /// Applies a person's decision about one task of a run in memory.
    pub(super) fn decide(
        &mut self,
        run_id: &str,
        task_id: &str,
        decision: Decision,
        by: Arc<str>,
    ) -> Result<Arc<str>, EngineError> {
        let Some((id, run)) = self.runs.get_key_value(run_id) else {
            return Err(EngineError::RunNotFound(run_id.to_owned()));
        };
        let id = Arc::clone(id);
        let Some(i) = run.machine.dag().index_of(task_id) else {
            return Err(EngineError::TaskNotFound(
                run_id.to_owned(),
                task_id.to_owned(),
            ));
        };
        let now = self.config.clock.now_ms();
        let who = Arc::clone(&by);
        self.apply_as(by, &id, |m, o| apply(m, i, decision, &who, now, o))
            .map(|()| id)
            .map_err(|e| match e {
                Rejected::BadDecision(why) => EngineError::InvalidDecision(why),
                e => EngineError::Conflict(conflict(run_id, task_id, e)),
            })
    }

    /// Applies the timeouts of waiting tasks whose deadlines passed.
    pub(super) fn fire_deadlines(&mut self, now: i64) {
        while let Some(Reverse(d)) = self.deadlines.peek() {
            if d.due_ms > now {
                break;
            }
            let Reverse(d) = self.deadlines.pop().expect("peeked");
            // A task decided meanwhile is no longer waiting: the timeout applies once.
            let _ = self.apply(&d.run, |m, o| m.decision_due(d.task, now, o));
        }
    }
}
