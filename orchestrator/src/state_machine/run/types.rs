//! What goes into and comes out of a [`super::RunMachine`].

use super::super::budget::Charges;
use super::super::states::{IllegalTransition, RunState, TaskState};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use worker_protocol::Usage;

/// Why an attempt failed, as recorded on the task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskFailure {
    /// `exception`, `timeout`, `cancelled`, `worker_lost`, `unknown_handler`, …
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceback: Option<String>,
}

/// A successful attempt's report.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptSuccess {
    pub output: Value,
    pub worker: Arc<str>,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    pub usage: Option<Usage>,
    /// Tasks the handler spawned (dynamic fan-out), in the submission format.
    pub children: Vec<Value>,
}

/// A failed attempt's report, with what the handler wants done about it.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptFailure {
    pub failure: TaskFailure,
    /// When the attempt began, if it began at all (a lost attempt may not have).
    pub started_at_ms: Option<i64>,
    pub retryable: bool,
    pub retry_after_s: Option<f64>,
    pub usage: Option<Usage>,
}

/// The live state of one task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRuntime {
    pub state: TaskState,
    /// The current attempt (0 before the first dispatch). Results for other attempts are stale.
    pub attempt: u32,
    /// Failed attempts since the task was last (re)started; compared with `retries`.
    pub failures: u32,
    /// Attempts lost with their worker since the task was last (re)started; these do
    /// not use up retries, but only [`MAX_LOST_ATTEMPTS`] are allowed.
    pub lost: u32,
    pub output: Option<Value>,
    /// Boxed: set on few tasks, and inline it would cost every task ~90 bytes.
    pub error: Option<Box<TaskFailure>>,
    /// Tokens and money all attempts used so far: the sum of `charges`.
    pub usage: Usage,
    /// What each attempt counts against budgets (see [`budget`]).
    pub charges: Charges,
    pub worker_id: Option<Arc<str>>,
    pub queued_at_ms: Option<i64>,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    /// Dependencies not yet terminal.
    pub(super) unresolved: u32,
    /// Some dependency ended other than succeeded.
    pub(super) upstream_failed: bool,
}

impl Default for TaskRuntime {
    fn default() -> Self {
        Self::new()
    }
}

impl TaskRuntime {
    /// A pending task that has never run.
    pub fn new() -> Self {
        Self {
            state: TaskState::Pending,
            attempt: 0,
            failures: 0,
            lost: 0,
            output: None,
            error: None,
            usage: Usage::default(),
            charges: Charges::default(),
            worker_id: None,
            queued_at_ms: None,
            started_at_ms: None,
            finished_at_ms: None,
            unresolved: 0,
            upstream_failed: false,
        }
    }
}

/// What the caller must do after a stimulus.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Push attempt `attempt` of task `task` to its queue.
    Dispatch { task: u32, attempt: u32 },
    /// Deliver [`RunMachine::retry_due`] for this attempt after `delay_ms` (before jitter).
    ScheduleRetry {
        task: u32,
        attempt: u32,
        delay_ms: u64,
    },
    /// Tell the worker running this attempt to stop it.
    CancelAttempt { task: u32, attempt: u32 },
    /// Deliver [`super::RunMachine::decision_due`] for this waiting task at `at_ms`.
    Deadline { task: u32, at_ms: i64 },
}

/// What a recorded event is about.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// A task changed state.
    Task { task: u32, state: TaskState },
    /// The run changed state.
    Run { state: RunState },
    /// A handler wrote a log line.
    Log {
        task: u32,
        level: String,
        message: String,
    },
}

/// A transition, numbered in the run's sequence, to be stored and published.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub seq: u64,
    pub kind: EventKind,
    pub attempt: u32,
    pub at_ms: i64,
    pub worker_id: Option<Arc<str>>,
    pub error: Option<TaskFailure>,
}

/// Everything a batch of stimuli produced. Reused across calls to avoid allocations.
#[derive(Debug, Default)]
pub struct Output {
    pub commands: Vec<Command>,
    pub events: Vec<Event>,
    /// Tasks whose row changed, possibly repeated.
    pub dirty: Vec<u32>,
    /// Tasks added to the run (spawned children): their rows must be inserted.
    pub new_tasks: Vec<u32>,
    /// Tasks whose spec changed (a spawn made them wait on new children too).
    pub respecced: Vec<u32>,
    /// The run's own row changed (state, sequence).
    pub run_changed: bool,
    /// The run's options changed (a person raised its budget): they must be stored.
    pub options_changed: bool,
    /// How many more tasks this output may resolve or admit; `None` for no bound. The
    /// engine bounds it per flush, so a run of 100,000 ready tasks is dispatched in
    /// slices the writer can keep up with rather than in one burst that holds every
    /// task's message, event and row at once; what does not fit stays deferred.
    pub room: Option<usize>,
}

/// Capacity an [`Output`]'s lists keep across [`Output::reset`]: enough for the usual
/// batch, so most calls allocate nothing.
const KEPT_CAPACITY: usize = 1024;

impl Output {
    /// Empties it for the next stimulus. A list that grew past [`KEPT_CAPACITY`] (a
    /// run of 100,000 tasks started at once produces as many events, ~25 MB) gives
    /// the excess back rather than holding it for the life of the process.
    pub fn reset(&mut self) {
        fn empty<T>(v: &mut Vec<T>) {
            v.clear();
            v.shrink_to(KEPT_CAPACITY);
        }
        empty(&mut self.commands);
        empty(&mut self.events);
        empty(&mut self.dirty);
        empty(&mut self.new_tasks);
        empty(&mut self.respecced);
        self.run_changed = false;
        self.options_changed = false;
        self.room = None;
    }

    /// Takes one unit of room; false when none is left.
    pub fn take_room(&mut self) -> bool {
        match &mut self.room {
            None => true,
            Some(0) => false,
            Some(n) => {
                *n -= 1;
                true
            }
        }
    }

    /// True when no room is left.
    pub fn is_full(&self) -> bool {
        self.room == Some(0)
    }
}

/// Why a stimulus was not applied: stale or duplicate reports are normal under
/// at-least-once delivery, and the caller acknowledges and drops them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("no task with that index")]
    UnknownTask,
    #[error("attempt {got} is not the current attempt {current}")]
    StaleAttempt { got: u32, current: u32 },
    #[error("attempt {got} was never dispatched (the latest is {current})")]
    UnknownAttempt { got: u32, current: u32 },
    #[error("the attempt is running on another worker")]
    OtherWorker,
    #[error("task is already {0}")]
    AlreadyFinal(TaskState),
    #[error("the run is {0}")]
    RunFinished(RunState),
    #[error("the run is still running")]
    RunNotFinished,
    /// A decision (approve, reject) on a task that does not wait for one.
    #[error("task is {0}, not waiting for a decision")]
    NotWaiting(TaskState),
    /// A decision that does not fit what the task waits for, or a raise that is not one.
    #[error("{0}")]
    BadDecision(String),
    #[error(transparent)]
    Illegal(#[from] IllegalTransition),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_empties_an_output_and_gives_back_what_a_huge_batch_grew() {
        let mut out = Output::default();
        for task in 0..100_000 {
            out.commands.push(Command::Dispatch { task, attempt: 1 });
            out.dirty.push(task);
        }
        out.run_changed = true;
        out.reset();
        assert!(out.commands.is_empty() && out.dirty.is_empty());
        assert!(!out.run_changed);
        assert!(out.commands.capacity() <= KEPT_CAPACITY);
        assert!(out.dirty.capacity() <= KEPT_CAPACITY);
        // A usual batch keeps its room, so the next one allocates nothing.
        out.dirty.extend(0..10);
        let room = out.dirty.capacity();
        out.reset();
        assert_eq!(out.dirty.capacity(), room);
    }

    #[test]
    fn a_task_runtime_stays_small() {
        // Every task of every live run has one: the boxed failure keeps it so.
        assert!(
            std::mem::size_of::<TaskRuntime>() <= 184,
            "{}",
            std::mem::size_of::<TaskRuntime>()
        );
    }
}
