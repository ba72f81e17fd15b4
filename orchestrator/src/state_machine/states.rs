//! Task and run states, and the one table of legal task transitions.
//!
//! ```text
//!            deps met            dispatched          started
//! pending ──────────▶ ready ─────────────▶ queued ─────────▶ running
//!    │  ╲______________________________▲    │  ▲               │
//!    │   deps met, no limit            │    │  │ retry due     ├──▶ succeeded
//!    │                                 │    │  └── ready ◀─────┤ failed, retries left
//!    ▼ upstream failed (all_success)   │    │                  ├──▶ failed
//! skipped                   released ──┘────┴──────────────────┘
//! any non-terminal ── cancel ──▶ cancelled;  failed | skipped | cancelled ── rerun ──▶ pending
//! ready ── over its budget ──▶ failed;  pending | ready ── run budget spent ──▶ skipped
//! pending ── approval task's deps met ──▶ waiting;  ready ── budget asks ──▶ waiting
//! waiting ── approved ──▶ succeeded | ready (budget raised);  ── rejected ──▶ failed
//! waiting (run budget) ── raise rejected ──▶ skipped
//! ```

use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a task is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting on dependencies.
    Pending,
    /// Dependencies done; waiting for a retry backoff or a limit before dispatch.
    Ready,
    /// Pushed to its Redis queue.
    Queued,
    /// A worker took it.
    Running,
    /// Waits for a person's decision (an `approval` task, or a budget that asks), on no
    /// worker and holding no slot.
    Waiting,
    Succeeded,
    Failed,
    Cancelled,
    /// Not run, because an upstream task did not succeed (`all_success` trigger).
    Skipped,
}

/// How many task states there are.
pub const TASK_STATE_COUNT: usize = 9;

/// Every task state, in display order; `TaskState as usize` indexes it.
pub const ALL_TASK_STATES: [TaskState; TASK_STATE_COUNT] = [
    TaskState::Pending,
    TaskState::Ready,
    TaskState::Queued,
    TaskState::Running,
    TaskState::Waiting,
    TaskState::Succeeded,
    TaskState::Failed,
    TaskState::Cancelled,
    TaskState::Skipped,
];

impl TaskState {
    /// True for states a task never leaves except by a rerun.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded | TaskState::Failed | TaskState::Cancelled | TaskState::Skipped
        )
    }

    /// The name used in the API, the store and events.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Ready => "ready",
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::Waiting => "waiting",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
            TaskState::Skipped => "skipped",
        }
    }

    /// Parses a name written by [`TaskState::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        ALL_TASK_STATES.into_iter().find(|t| t.as_str() == s)
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a run is: running until every task is terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl RunState {
    /// The name used in the API, the store and events.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
        }
    }

    /// Parses a name written by [`RunState::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        [
            RunState::Running,
            RunState::Succeeded,
            RunState::Failed,
            RunState::Cancelled,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }

    /// True once the run is over.
    pub fn is_terminal(self) -> bool {
        self != RunState::Running
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that happens to a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stimulus {
    /// Every dependency is terminal and the trigger allows running; no limit applies.
    DepsMet,
    /// Every dependency is terminal and the trigger allows running, but it must wait
    /// (a retry backoff or a concurrency limit).
    DepsMetGated,
    /// Every dependency is terminal and one did not succeed (`all_success`).
    UpstreamFailed,
    /// The task leaves `ready` for its queue.
    Dispatched,
    /// A worker reported the attempt started.
    Started,
    /// The attempt succeeded.
    Succeeded,
    /// The attempt failed with retries left; it waits out a backoff in `ready`.
    FailedWillRetry,
    /// The attempt failed for good.
    FailedFinal,
    /// The worker gave the attempt back unfinished; it is queued again.
    Released,
    /// The run was cancelled.
    Cancel,
    /// The run is retried: the task goes back to waiting on its dependencies.
    Rerun,
    /// The task's own budget cannot cover another attempt.
    OverBudget,
    /// The run's budget is spent: tasks not yet dispatched never will be.
    BudgetExhausted,
    /// An approval task's dependencies are done: it waits for a decision.
    AwaitDecision,
    /// A budget that asks cannot cover the task: it waits for a decision.
    AskBudget,
    /// A person approved (an approval task succeeds).
    Approved,
    /// A person raised the budget a waiting task asked about: it waits its turn again.
    BudgetRaised,
    /// A person rejected, or the decision timed out as a rejection.
    Declined,
}

/// A stimulus that is not legal in the task's current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("illegal transition: task in state {from} cannot take {stimulus:?}")]
pub struct IllegalTransition {
    pub from: TaskState,
    pub stimulus: Stimulus,
}

/// The one table of legal task transitions.
pub fn transition(from: TaskState, stimulus: Stimulus) -> Result<TaskState, IllegalTransition> {
    use Stimulus as S;
    use TaskState as T;
    let to = match (from, stimulus) {
        (T::Pending, S::DepsMet) => T::Queued,
        (T::Pending, S::DepsMetGated) => T::Ready,
        (T::Pending, S::UpstreamFailed) => T::Skipped,
        (T::Ready, S::Dispatched) => T::Queued,
        (T::Queued, S::Started) => T::Running,
        // A result may arrive without its `started`: workers drop starts of quick tasks.
        (T::Queued | T::Running, S::Succeeded) => T::Succeeded,
        (T::Queued | T::Running, S::FailedWillRetry) => T::Ready,
        (T::Queued | T::Running, S::FailedFinal) => T::Failed,
        (T::Queued | T::Running, S::Released) => T::Queued,
        (T::Pending | T::Ready | T::Queued | T::Running | T::Waiting, S::Cancel) => T::Cancelled,
        (T::Pending, S::AwaitDecision) => T::Waiting,
        (T::Ready, S::AskBudget) => T::Waiting,
        (T::Waiting, S::Approved) => T::Succeeded,
        (T::Waiting, S::BudgetRaised) => T::Ready,
        (T::Waiting, S::Declined) => T::Failed,
        (T::Failed | T::Skipped | T::Cancelled, S::Rerun) => T::Pending,
        (T::Ready, S::OverBudget) => T::Failed,
        // A waiting task whose run-budget raise was rejected ends as `fail` would have.
        (T::Pending | T::Ready | T::Waiting, S::BudgetExhausted) => T::Skipped,
        (from, stimulus) => return Err(IllegalTransition { from, stimulus }),
    };
    Ok(to)
}
