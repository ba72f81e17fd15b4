//! One run's lifecycle as a pure state machine: stimuli in, [`Output`] out.
//!
//! The machine keeps an indegree-style counter per task (`unresolved`: dependencies not
//! yet terminal), so a task's completion costs O(its children). It does no I/O and reads
//! no clock: callers pass `now_ms`, and carry out the [`Command`]s it returns.

use super::budget::{self, estimate, limit_keys, shortfall, Change, Charges};
use super::states::{
    transition, IllegalTransition, RunState, Stimulus, TaskState, ALL_TASK_STATES,
};
use crate::dag::{grow, Dag, KeyLimit, Limits, Trigger, DEFAULT_RETRY_BACKOFF_S};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::ops::Bound::{Excluded, Unbounded};
use std::sync::Arc;
pub use worker_protocol::Usage;

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
    pub error: Option<TaskFailure>,
    /// Tokens and money all attempts used so far: the sum of `charges`.
    pub usage: Usage,
    /// What each attempt counts against budgets (see [`budget`]).
    pub charges: Charges,
    pub worker_id: Option<Arc<str>>,
    pub queued_at_ms: Option<i64>,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    /// Dependencies not yet terminal.
    unresolved: u32,
    /// Some dependency ended other than succeeded.
    upstream_failed: bool,
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
    #[error(transparent)]
    Illegal(#[from] IllegalTransition),
}

/// Attempts of one task that may be lost with their worker before the task fails: a
/// task that kills every worker it lands on must not loop forever.
pub const MAX_LOST_ATTEMPTS: u32 = 3;

/// Backoffs never exceed an hour, however many failures.
const MAX_BACKOFF_MS: u64 = 3_600_000;

/// One run's tasks and their lifecycle.
#[derive(Debug, Clone)]
pub struct RunMachine {
    dag: Arc<Dag>,
    tasks: Vec<TaskRuntime>,
    state: RunState,
    /// Tasks per state, indexed by `TaskState as usize`.
    counts: [u32; 8],
    /// Last event sequence number used.
    seq: u64,
    finished_at_ms: Option<i64>,
    /// True when any task may have to wait in `ready` for a limit or budget; a run
    /// without any dispatches straight from `pending`.
    gated: bool,
    /// Ready tasks waiting to be admitted, highest priority first, then in order.
    waiting: BTreeSet<(Reverse<i32>, u32)>,
    /// What attempts in flight are expected to spend, reserved against the budget (by
    /// task: a task has one attempt in flight at most).
    reserved: HashMap<u32, Usage>,
    /// What every attempt was charged so far, in flight or not: the sum of the tasks'
    /// `usage`.
    spent: Usage,
    /// Why the run stopped dispatching: its budget would be exceeded.
    exhausted: Option<String>,
}

/// What admitting one task must also pass, beyond the run's own limits: limits shared
/// with other runs (keys, agents), decided by whoever holds them.
pub trait Gate {
    /// Takes the keys' slots for `attempt` of `task` if every limit allows it now.
    fn try_acquire(
        &mut self,
        task: u32,
        attempt: u32,
        keys: &[(String, KeyLimit)],
        tokens: u64,
    ) -> bool;
}

/// A gate with nothing shared to limit.
pub struct Open;

impl Gate for Open {
    fn try_acquire(&mut self, _: u32, _: u32, _: &[(String, KeyLimit)], _: u64) -> bool {
        true
    }
}

impl RunMachine {
    /// A new run: every task pending, nothing dispatched until [`RunMachine::start`].
    pub fn new(dag: Arc<Dag>) -> Self {
        let tasks: Vec<TaskRuntime> = (0..dag.len() as u32)
            .map(|i| {
                let mut t = TaskRuntime::new();
                t.unresolved = dag.parents(i).len() as u32;
                t
            })
            .collect();
        let mut counts = [0u32; 8];
        counts[TaskState::Pending as usize] = tasks.len() as u32;
        let gated = needs_gate(&dag, 0);
        Self {
            dag,
            tasks,
            state: RunState::Running,
            counts,
            seq: 0,
            finished_at_ms: None,
            gated,
            waiting: BTreeSet::new(),
            reserved: HashMap::new(),
            spent: Usage::default(),
            exhausted: None,
        }
    }

    /// Rebuilds a run from stored task rows (after a restart), recomputing counters.
    pub fn restore(
        dag: Arc<Dag>,
        tasks: Vec<TaskRuntime>,
        state: RunState,
        seq: u64,
        finished_at_ms: Option<i64>,
    ) -> Self {
        let gated = needs_gate(&dag, 0);
        let mut m = Self {
            dag,
            tasks,
            state,
            counts: [0; 8],
            seq,
            finished_at_ms,
            gated,
            waiting: BTreeSet::new(),
            reserved: HashMap::new(),
            spent: Usage::default(),
            exhausted: None,
        };
        for (i, t) in m.tasks.iter().enumerate() {
            m.counts[t.state as usize] += 1;
            budget::add(&mut m.spent, &t.usage);
            if t.state == TaskState::Skipped
                && t.error.as_ref().is_some_and(|e| e.kind == BUDGET_EXCEEDED)
            {
                m.exhausted = t.error.as_ref().map(|e| e.message.clone());
            }
            if m.gated && !state.is_terminal() {
                match t.state {
                    // Waiting out a backoff or a limit: either way, admission decides.
                    TaskState::Ready => {
                        m.waiting.insert(m.waiting_key(i as u32));
                    }
                    TaskState::Queued | TaskState::Running => {
                        let est = m.estimate(i as u32);
                        m.reserved.insert(i as u32, est);
                    }
                    _ => {}
                }
            }
        }
        m.recompute_dependencies();
        m
    }

    /// True when tasks wait in `ready` for [`RunMachine::admit`].
    pub fn has_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// True when task `i` waits for admission (a limit or budget), not a backoff.
    pub fn is_waiting(&self, i: u32) -> bool {
        self.waiting.contains(&self.waiting_key(i))
    }

    /// The keys task `i` holds while in flight (see [`Gate`]).
    pub fn limit_keys(&self, i: u32) -> Vec<(String, KeyLimit)> {
        limit_keys(&self.dag, i)
    }

    /// Why the run stopped dispatching, when its budget ran out.
    pub fn exhausted(&self) -> Option<&str> {
        self.exhausted.as_deref()
    }

    /// Dispatches waiting tasks, best first, while the run's limits, its budget and
    /// `gate` allow. A task its own budget cannot cover fails; once the run's budget
    /// cannot cover the next task even with nothing else in flight, no more are
    /// dispatched: those left are skipped and the run fails once running ones finish.
    pub fn admit(&mut self, now_ms: i64, gate: &mut dyn Gate, out: &mut Output) {
        if self.state.is_terminal() {
            self.waiting.clear();
            return;
        }
        let max_parallel = self.dag.options.max_parallel.map(|m| m as usize);
        let run_budget = self.dag.options.budget;
        // A cursor, not a copy: a run may hold thousands of waiting tasks, and a full
        // run usually stops at the first.
        let mut cursor: Option<(Reverse<i32>, u32)> = None;
        loop {
            let next = match cursor {
                None => self.waiting.first(),
                Some(c) => self.waiting.range((Excluded(c), Unbounded)).next(),
            };
            let Some(&key) = next else { break };
            cursor = Some(key);
            let i = key.1;

            if self.exhausted.is_some() {
                break;
            }
            let in_flight = self.counts[TaskState::Queued as usize] as usize
                + self.counts[TaskState::Running as usize] as usize;
            if max_parallel.is_some_and(|m| in_flight >= m) {
                break;
            }
            let est = self.estimate(i);
            if let Some(b) = &self.dag.task(i).budget {
                if let Some(why) = shortfall(b, &self.tasks[i as usize].usage, &est) {
                    self.waiting.remove(&key);
                    self.over_budget(i, why, now_ms, out);
                    continue;
                }
            }
            if let Some(b) = &run_budget {
                if let Some(why) = shortfall(b, &self.spent, &est) {
                    let id = &self.dag.task(i).id;
                    self.exhausted = Some(format!(
                        "budget exceeded: the run's {why} (for task {id:?}); no more tasks are dispatched"
                    ));
                    break;
                }
                if shortfall(b, &self.committed(), &est).is_some() {
                    // What is in flight may spend less than reserved: wait for it.
                    break;
                }
            }
            let attempt = self.tasks[i as usize].attempt + 1;
            let keys = limit_keys(&self.dag, i);
            if !gate.try_acquire(i, attempt, &keys, budget::tokens(&est)) {
                continue;
            }
            self.waiting.remove(&key);
            self.reserved.insert(i, est);
            let _ = self.set_state(i, Stimulus::Dispatched, out);
            self.dispatch(i, now_ms, out);
        }
        if self.exhausted.is_some() {
            self.skip_unstarted(now_ms, out);
        }
    }

    /// The graph this run executes.
    pub fn dag(&self) -> &Arc<Dag> {
        &self.dag
    }

    pub fn state(&self) -> RunState {
        self.state
    }

    pub fn task(&self, i: u32) -> &TaskRuntime {
        &self.tasks[i as usize]
    }

    pub fn tasks(&self) -> &[TaskRuntime] {
        &self.tasks
    }

    /// Tasks per state, in the order of [`ALL_TASK_STATES`].
    pub fn counts(&self) -> [u32; 8] {
        self.counts
    }

    /// Last event sequence number used.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn finished_at_ms(&self) -> Option<i64> {
        self.finished_at_ms
    }

    /// Records the run as running and dispatches every task with no dependencies.
    pub fn start(&mut self, now_ms: i64, out: &mut Output) {
        self.record_run(now_ms, out);
        let roots: Vec<u32> = (0..self.tasks.len() as u32)
            .filter(|&i| {
                self.tasks[i as usize].state == TaskState::Pending
                    && self.tasks[i as usize].unresolved == 0
            })
            .collect();
        self.resolve(roots, now_ms, out);
    }

    /// Tasks whose dependencies are all terminal but which are still `pending` (after a
    /// restore, work that was decided but not yet carried out) are dispatched or skipped.
    pub fn resume(&mut self, now_ms: i64, out: &mut Output) {
        if self.state.is_terminal() {
            return;
        }
        let stuck: Vec<u32> = (0..self.tasks.len() as u32)
            .filter(|&i| {
                self.tasks[i as usize].state == TaskState::Pending
                    && self.tasks[i as usize].unresolved == 0
            })
            .collect();
        self.resolve(stuck, now_ms, out);
        self.complete_if_done(now_ms, out);
    }

    /// A worker began `attempt` of task `i`.
    pub fn started(
        &mut self,
        i: u32,
        attempt: u32,
        worker: Arc<str>,
        at_ms: i64,
        out: &mut Output,
    ) -> Result<(), Rejected> {
        self.check_current(i, attempt)?;
        let t = &self.tasks[i as usize];
        if t.state == TaskState::Running {
            return Ok(()); // a duplicate start after a redelivery
        }
        self.set_state(i, Stimulus::Started, out)?;
        let t = &mut self.tasks[i as usize];
        t.started_at_ms = Some(at_ms);
        t.worker_id = Some(worker);
        self.record_task(i, at_ms, None, out);
        Ok(())
    }

    /// `attempt` of task `i` succeeded with `output`.
    pub fn succeeded(
        &mut self,
        i: u32,
        attempt: u32,
        success: AttemptSuccess,
        out: &mut Output,
    ) -> Result<(), Rejected> {
        let AttemptSuccess {
            output,
            worker,
            started_at_ms,
            finished_at_ms,
            usage,
            children,
        } = success;
        // What any report of an attempt says it used counts, even a late one.
        if let Some(u) = &usage {
            self.charge_report(i, attempt, u, out)?;
        }
        // Before anything else: a duplicate report must not spawn the children twice.
        self.check_current(i, attempt)?;
        if !children.is_empty() {
            if let Err(problems) = self.spawn(i, &children, finished_at_ms, out) {
                // A bad child spec is the handler's bug: retrying would spawn it again.
                let failure = AttemptFailure {
                    failure: TaskFailure {
                        kind: "invalid_children".into(),
                        error_type: None,
                        message: problems
                            .0
                            .iter()
                            .map(|p| p.message.as_str())
                            .collect::<Vec<_>>()
                            .join("; "),
                        traceback: None,
                    },
                    retryable: false,
                    retry_after_s: None,
                    started_at_ms: Some(started_at_ms),
                    usage,
                };
                return self.failed(i, attempt, failure, Some(worker), finished_at_ms, out);
            }
        }
        self.settle(i, attempt, false, out);
        self.set_state(i, Stimulus::Succeeded, out)?;
        let t = &mut self.tasks[i as usize];
        t.output = Some(output);
        t.error = None;
        t.worker_id = Some(worker);
        t.started_at_ms = Some(started_at_ms);
        t.finished_at_ms = Some(finished_at_ms);
        self.record_task(i, finished_at_ms, None, out);
        self.propagate(i, finished_at_ms, out);
        Ok(())
    }

    /// `attempt` of task `i` failed; it is retried after a backoff while retries remain
    /// and the failure allows it.
    pub fn failed(
        &mut self,
        i: u32,
        attempt: u32,
        failure: AttemptFailure,
        worker: Option<Arc<str>>,
        finished_at_ms: i64,
        out: &mut Output,
    ) -> Result<(), Rejected> {
        if let Some(u) = &failure.usage {
            self.charge_report(i, attempt, u, out)?;
        }
        self.check_current(i, attempt)?;
        let spec = self.dag.task(i);
        let retries = spec.retries;
        let base_s = spec.retry_backoff_s.unwrap_or(DEFAULT_RETRY_BACKOFF_S);
        let t = &self.tasks[i as usize];
        let will_retry = failure.retryable && t.failures < retries;
        let stimulus = if will_retry {
            Stimulus::FailedWillRetry
        } else {
            Stimulus::FailedFinal
        };
        self.set_state(i, stimulus, out)?;
        let unaccounted = budget::ends_unaccounted(&failure.failure.kind);
        self.settle(i, attempt, unaccounted, out);
        let t = &mut self.tasks[i as usize];
        t.failures += 1;
        t.error = Some(failure.failure.clone());
        if failure.started_at_ms.is_some() {
            t.started_at_ms = failure.started_at_ms;
        }
        if worker.is_some() {
            t.worker_id = worker;
        }
        t.finished_at_ms = Some(finished_at_ms);
        self.record_task(i, finished_at_ms, Some(failure.failure), out);
        if will_retry {
            let failures = self.tasks[i as usize].failures;
            let backoff = backoff_ms(base_s, failures);
            let asked = failure
                .retry_after_s
                .map_or(0, |s| (s.max(0.0) * 1000.0) as u64);
            out.commands.push(Command::ScheduleRetry {
                task: i,
                attempt,
                delay_ms: backoff.max(asked).min(MAX_BACKOFF_MS),
            });
        } else {
            self.propagate(i, finished_at_ms, out);
        }
        Ok(())
    }

    /// The backoff of `attempt` of task `i` has passed: dispatch the next attempt.
    pub fn retry_due(
        &mut self,
        i: u32,
        attempt: u32,
        now_ms: i64,
        out: &mut Output,
    ) -> Result<(), Rejected> {
        self.check_current(i, attempt)?;
        if self.tasks[i as usize].state != TaskState::Ready {
            return Err(Rejected::Illegal(IllegalTransition {
                from: self.tasks[i as usize].state,
                stimulus: Stimulus::Dispatched,
            }));
        }
        if self.gated {
            // The next attempt waits its turn like any other; marked dirty so the
            // caller knows to run admission.
            self.waiting.insert(self.waiting_key(i));
            out.dirty.push(i);
            return Ok(());
        }

        self.set_state(i, Stimulus::Dispatched, out)?;
        self.dispatch(i, now_ms, out);
        Ok(())
    }

    /// The worker gave `attempt` of task `i` back unfinished: queue a new attempt without
    /// counting a failure.
    pub fn released(
        &mut self,
        i: u32,
        attempt: u32,
        now_ms: i64,
        out: &mut Output,
    ) -> Result<(), Rejected> {
        self.check_current(i, attempt)?;
        self.set_state(i, Stimulus::Released, out)?;
        self.dispatch(i, now_ms, out);
        Ok(())
    }

    /// Records a log line a handler wrote during `attempt` of task `i`. Lines of any
    /// attempt are kept, even a stale one: they tell what happened.
    pub fn log(
        &mut self,
        i: u32,
        attempt: u32,
        level: String,
        message: String,
        at_ms: i64,
        out: &mut Output,
    ) -> Result<(), Rejected> {
        if i as usize >= self.tasks.len() {
            return Err(Rejected::UnknownTask);
        }
        let seq = self.next_seq();
        out.events.push(Event {
            seq,
            kind: EventKind::Log {
                task: i,
                level,
                message,
            },
            attempt,
            at_ms,
            worker_id: self.tasks[i as usize].worker_id.clone(),
            error: None,
        });
        out.run_changed = true;
        Ok(())
    }

    /// The worker running `attempt` of task `i` is gone: the attempt is recorded as lost
    /// and a new one queued at once, without using up a retry. After
    /// [`MAX_LOST_ATTEMPTS`] losses the task fails.
    pub fn lost(
        &mut self,
        i: u32,
        attempt: u32,
        now_ms: i64,
        out: &mut Output,
    ) -> Result<(), Rejected> {
        self.check_current(i, attempt)?;
        let t = &self.tasks[i as usize];
        let lost = t.lost + 1;
        let failure = TaskFailure {
            kind: "worker_lost".into(),
            error_type: None,
            message: format!("the worker running attempt {attempt} stopped renewing its lease ({lost} of {MAX_LOST_ATTEMPTS} allowed)"),
            traceback: None,
        };
        if lost >= MAX_LOST_ATTEMPTS {
            self.set_state(i, Stimulus::FailedFinal, out)?;
            self.settle(i, attempt, true, out);
        } else {
            self.set_state(i, Stimulus::FailedWillRetry, out)?;
            // The next attempt goes out at once, under the same reservation.
            if let Some(r) = self.reserved.get(&i).copied() {
                self.charge(i, out, |c| c.keep_reservation(attempt, &r));
            }
        }
        let t = &mut self.tasks[i as usize];
        t.lost = lost;
        t.error = Some(failure.clone());
        t.finished_at_ms = Some(now_ms);
        self.record_task(i, now_ms, Some(failure), out);
        if lost >= MAX_LOST_ATTEMPTS {
            self.propagate(i, now_ms, out);
        } else {
            self.set_state(i, Stimulus::Dispatched, out)?;
            self.dispatch(i, now_ms, out);
        }
        Ok(())
    }

    /// Cancels every unfinished task; running attempts are told to stop.
    pub fn cancel(&mut self, now_ms: i64, out: &mut Output) -> Result<(), Rejected> {
        if self.state.is_terminal() {
            return Err(Rejected::RunFinished(self.state));
        }
        for i in 0..self.tasks.len() as u32 {
            let t = &self.tasks[i as usize];
            if t.state.is_terminal() {
                continue;
            }
            let attempt = t.attempt;
            match t.state {
                TaskState::Running => {
                    out.commands
                        .push(Command::CancelAttempt { task: i, attempt });
                    // A worker is on it: its call may have been billed.
                    self.settle(i, attempt, true, out);
                }
                TaskState::Queued => {
                    out.commands
                        .push(Command::CancelAttempt { task: i, attempt });
                }
                _ => {}
            }
            self.set_state(i, Stimulus::Cancel, out)?;
            let t = &mut self.tasks[i as usize];
            t.finished_at_ms = Some(now_ms);
            t.error = Some(TaskFailure {
                kind: "cancelled".into(),
                error_type: None,
                message: "the run was cancelled".into(),
                traceback: None,
            });
            self.record_task(i, now_ms, None, out);
        }
        self.waiting.clear();
        self.reserved.clear();
        self.finish_run(RunState::Cancelled, now_ms, out);
        Ok(())
    }

    /// Runs failed, skipped and cancelled tasks again (with fresh retries), keeping the
    /// outputs of tasks that succeeded.
    pub fn rerun(&mut self, now_ms: i64, out: &mut Output) -> Result<(), Rejected> {
        if !self.state.is_terminal() {
            return Err(Rejected::RunNotFinished);
        }
        for i in 0..self.tasks.len() as u32 {
            if matches!(
                self.tasks[i as usize].state,
                TaskState::Failed | TaskState::Skipped | TaskState::Cancelled
            ) {
                self.set_state(i, Stimulus::Rerun, out)?;
                let t = &mut self.tasks[i as usize];
                t.failures = 0;
                t.lost = 0;
                t.output = None;
                t.error = None;
                t.worker_id = None;
                t.queued_at_ms = None;
                t.started_at_ms = None;
                t.finished_at_ms = None;
                self.record_task(i, now_ms, None, out);
            }
        }
        self.state = RunState::Running;
        self.finished_at_ms = None;
        self.exhausted = None;
        self.record_run(now_ms, out);
        self.recompute_dependencies();
        self.resume(now_ms, out);
        Ok(())
    }

    /// Adds `children` of task `i` to the run: the graph grows, each child starts
    /// pending, and the tasks that waited on `i` now wait on the children too.
    fn spawn(
        &mut self,
        i: u32,
        children: &[Value],
        now_ms: i64,
        out: &mut Output,
    ) -> Result<(), crate::dag::ValidationErrors> {
        let dependents: Vec<u32> = self.dag.children(i).to_vec();
        // The machine is the graph's only holder here, so it grows in place.
        let added = grow(
            Arc::make_mut(&mut self.dag),
            i,
            children,
            &Limits::default(),
        )?;
        for &c in &added {
            let mut t = TaskRuntime::new();
            t.unresolved = self.dag.parents(c).len() as u32;
            self.tasks.push(t);
            self.counts[TaskState::Pending as usize] += 1;
            out.new_tasks.push(c);
            self.record_task(c, now_ms, None, out);
        }
        for d in dependents {
            out.respecced.push(d);
            if self.tasks[d as usize].state == TaskState::Pending {
                self.tasks[d as usize].unresolved += added.len() as u32;
            }
        }
        self.gated |= needs_gate(&self.dag, added.first().copied().unwrap_or(0));
        Ok(())
    }

    /// `attempt` of task `i` reported using `usage` so far (a progress report, while
    /// its call is in flight): it counts at once, against the task's and the run's
    /// budgets alike. Reports of any dispatched attempt count, stale or not; a running
    /// attempt's only from the worker that started it.
    pub fn report_usage(
        &mut self,
        i: u32,
        attempt: u32,
        worker: &str,
        usage: &Usage,
        out: &mut Output,
    ) -> Result<(), Rejected> {
        let t = self.tasks.get(i as usize).ok_or(Rejected::UnknownTask)?;
        let running_elsewhere = t.attempt == attempt
            && t.state == TaskState::Running
            && t.worker_id.as_deref().is_some_and(|w| w != worker);
        if running_elsewhere {
            return Err(Rejected::OtherWorker);
        }
        self.charge_report(i, attempt, usage, out)
    }

    /// Counts a report's usage for `attempt` of task `i`, whatever became of the attempt.
    fn charge_report(
        &mut self,
        i: u32,
        attempt: u32,
        usage: &Usage,
        out: &mut Output,
    ) -> Result<(), Rejected> {
        let t = self.tasks.get(i as usize).ok_or(Rejected::UnknownTask)?;
        if attempt == 0 || attempt > t.attempt {
            return Err(Rejected::UnknownAttempt {
                got: attempt,
                current: t.attempt,
            });
        }
        self.charge(i, out, |c| c.report(attempt, usage));
        Ok(())
    }

    /// Changes one attempt's charge of task `i` and carries it into the totals.
    fn charge(&mut self, i: u32, out: &mut Output, f: impl FnOnce(&mut Charges) -> Change) {
        let t = &mut self.tasks[i as usize];
        let change = f(&mut t.charges);
        if change.is_none() {
            return;
        }
        change.apply(&mut t.usage);
        change.apply(&mut self.spent);
        out.dirty.push(i);
        out.run_changed = true;
    }

    /// `attempt` of task `i` ended: its reservation gives way to what it was charged.
    /// One that ended without its worker's account (`unaccounted`) and reported nothing
    /// is charged its reservation instead.
    fn settle(&mut self, i: u32, attempt: u32, unaccounted: bool, out: &mut Output) {
        let Some(reservation) = self.reserved.remove(&i) else {
            return;
        };
        if unaccounted {
            self.charge(i, out, |c| c.keep_reservation(attempt, &reservation));
        }
    }

    /// What the run has spent plus what its attempts in flight may still spend.
    pub(super) fn committed(&self) -> Usage {
        let mut committed = self.spent;
        for (&i, r) in &self.reserved {
            let t = &self.tasks[i as usize];
            let charged = t.charges.of(t.attempt).map(|c| c.usage).unwrap_or_default();
            budget::add(&mut committed, &budget::outstanding(r, &charged));
        }
        committed
    }

    /// Task `i`'s own budget cannot cover another attempt: it fails without one.
    fn over_budget(&mut self, i: u32, why: String, now_ms: i64, out: &mut Output) {
        let failure = TaskFailure {
            kind: BUDGET_EXCEEDED.into(),
            error_type: None,
            message: format!("budget exceeded: the task's {why}"),
            traceback: None,
        };
        let _ = self.set_state(i, Stimulus::OverBudget, out);
        let t = &mut self.tasks[i as usize];
        t.error = Some(failure.clone());
        t.finished_at_ms = Some(now_ms);
        self.record_task(i, now_ms, Some(failure), out);
        self.propagate(i, now_ms, out);
    }

    /// The run's budget is spent: every task waiting to be dispatched is skipped.
    fn skip_unstarted(&mut self, now_ms: i64, out: &mut Output) {
        let waiting: Vec<u32> = std::mem::take(&mut self.waiting)
            .into_iter()
            .map(|(_, i)| i)
            .collect();
        let mut todo = Vec::new();
        for i in waiting {
            self.skip_for_budget(i, now_ms, out);
            self.release_children(i, now_ms, &mut todo);
        }
        self.resolve(todo, now_ms, out);
        self.complete_if_done(now_ms, out);
    }

    fn skip_for_budget(&mut self, i: u32, now_ms: i64, out: &mut Output) {
        let failure = TaskFailure {
            kind: BUDGET_EXCEEDED.into(),
            error_type: None,
            message: self.exhausted.clone().unwrap_or_default(),
            traceback: None,
        };
        let _ = self.set_state(i, Stimulus::BudgetExhausted, out);
        let t = &mut self.tasks[i as usize];
        t.error = Some(failure.clone());
        t.finished_at_ms = Some(now_ms);
        self.record_task(i, now_ms, Some(failure), out);
    }

    /// What the next attempt of task `i` is expected to spend.
    fn estimate(&self, i: u32) -> Usage {
        let upstream: usize = self
            .dag
            .parents(i)
            .iter()
            .filter_map(|&p| self.tasks[p as usize].output.as_ref())
            .map(crate::dag::json_size)
            .sum();
        estimate(&self.dag, i, upstream)
    }

    fn waiting_key(&self, i: u32) -> (Reverse<i32>, u32) {
        (Reverse(self.dag.task(i).priority), i)
    }

    /// Tokens and money the whole run used so far.
    pub fn usage(&self) -> Usage {
        self.spent
    }

    fn check_current(&self, i: u32, attempt: u32) -> Result<(), Rejected> {
        let t = self.tasks.get(i as usize).ok_or(Rejected::UnknownTask)?;
        if t.state.is_terminal() {
            return Err(Rejected::AlreadyFinal(t.state));
        }
        if t.attempt != attempt {
            return Err(Rejected::StaleAttempt {
                got: attempt,
                current: t.attempt,
            });
        }
        Ok(())
    }

    fn set_state(
        &mut self,
        i: u32,
        stimulus: Stimulus,
        out: &mut Output,
    ) -> Result<TaskState, IllegalTransition> {
        let t = &mut self.tasks[i as usize];
        let to = transition(t.state, stimulus)?;
        self.counts[t.state as usize] -= 1;
        self.counts[to as usize] += 1;
        t.state = to;
        out.dirty.push(i);
        Ok(to)
    }

    fn dispatch(&mut self, i: u32, now_ms: i64, out: &mut Output) {
        let t = &mut self.tasks[i as usize];
        t.attempt += 1;
        t.queued_at_ms = Some(now_ms);
        t.started_at_ms = None;
        t.finished_at_ms = None;
        t.worker_id = None;
        let attempt = t.attempt;
        self.record_task(i, now_ms, None, out);
        out.commands.push(Command::Dispatch { task: i, attempt });
    }

    /// Decides every task in `ready` whose dependencies are all terminal: dispatch it, or
    /// skip it (and cascade the skip to its own dependents).
    fn resolve(&mut self, mut todo: Vec<u32>, now_ms: i64, out: &mut Output) {
        while let Some(i) = todo.pop() {
            let t = &self.tasks[i as usize];
            debug_assert_eq!(t.unresolved, 0);
            let skip = t.upstream_failed && self.dag.task(i).trigger == Trigger::AllSuccess;
            if self.exhausted.is_some() {
                // Whatever its upstream did, the budget is why it never runs.
                self.skip_for_budget(i, now_ms, out);
                self.release_children(i, now_ms, &mut todo);
            } else if skip {
                // Legal by construction: only pending tasks are resolved.
                let _ = self.set_state(i, Stimulus::UpstreamFailed, out);
                self.tasks[i as usize].finished_at_ms = Some(now_ms);
                self.record_task(i, now_ms, None, out);
                self.release_children(i, now_ms, &mut todo);
            } else if self.gated {
                let _ = self.set_state(i, Stimulus::DepsMetGated, out);
                self.record_task(i, now_ms, None, out);
                self.waiting.insert(self.waiting_key(i));
            } else {
                let _ = self.set_state(i, Stimulus::DepsMet, out);
                self.dispatch(i, now_ms, out);
            }
        }
    }

    /// Task `i` became terminal: update its dependents, then the run.
    fn propagate(&mut self, i: u32, now_ms: i64, out: &mut Output) {
        let mut todo = Vec::new();
        self.release_children(i, now_ms, &mut todo);
        self.resolve(todo, now_ms, out);
        self.complete_if_done(now_ms, out);
    }

    fn release_children(&mut self, i: u32, _now_ms: i64, todo: &mut Vec<u32>) {
        let ok = self.tasks[i as usize].state == TaskState::Succeeded;
        let dag = Arc::clone(&self.dag);
        for &c in dag.children(i) {
            let child = &mut self.tasks[c as usize];
            if child.state != TaskState::Pending {
                continue;
            }
            child.unresolved -= 1;
            child.upstream_failed |= !ok;
            if child.unresolved == 0 {
                todo.push(c);
            }
        }
    }

    fn complete_if_done(&mut self, now_ms: i64, out: &mut Output) {
        if self.state.is_terminal() {
            return;
        }
        let succeeded = self.counts[TaskState::Succeeded as usize] as usize;
        let terminal: usize = ALL_TASK_STATES
            .iter()
            .filter(|s| s.is_terminal())
            .map(|s| self.counts[*s as usize] as usize)
            .sum();
        if terminal < self.tasks.len() {
            return;
        }
        let state = if succeeded == self.tasks.len() {
            RunState::Succeeded
        } else {
            RunState::Failed
        };
        self.finish_run(state, now_ms, out);
    }

    fn finish_run(&mut self, state: RunState, now_ms: i64, out: &mut Output) {
        self.state = state;
        self.finished_at_ms = Some(now_ms);
        self.record_run(now_ms, out);
    }

    fn recompute_dependencies(&mut self) {
        let dag = Arc::clone(&self.dag);
        for i in 0..self.tasks.len() as u32 {
            let (mut unresolved, mut failed) = (0, false);
            for &p in dag.parents(i) {
                match self.tasks[p as usize].state {
                    TaskState::Succeeded => {}
                    s if s.is_terminal() => failed = true,
                    _ => unresolved += 1,
                }
            }
            let t = &mut self.tasks[i as usize];
            t.unresolved = unresolved;
            t.upstream_failed = failed;
        }
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn record_task(&mut self, i: u32, at_ms: i64, error: Option<TaskFailure>, out: &mut Output) {
        let seq = self.next_seq();
        let t = &self.tasks[i as usize];
        out.events.push(Event {
            seq,
            kind: EventKind::Task {
                task: i,
                state: t.state,
            },
            attempt: t.attempt,
            at_ms,
            worker_id: t.worker_id.clone(),
            error,
        });
        out.run_changed = true;
    }

    fn record_run(&mut self, at_ms: i64, out: &mut Output) {
        let seq = self.next_seq();
        out.events.push(Event {
            seq,
            kind: EventKind::Run { state: self.state },
            attempt: 0,
            at_ms,
            worker_id: None,
            error: None,
        });
        out.run_changed = true;
    }
}

/// The error kind of tasks stopped by a budget.
pub const BUDGET_EXCEEDED: &str = "budget_exceeded";

/// True when the run has limits or a budget, or tasks from `from` on might have to wait.
fn needs_gate(dag: &Dag, from: u32) -> bool {
    let o = &dag.options;
    o.max_parallel.is_some()
        || o.budget.is_some()
        || (from..dag.len() as u32).any(|i| {
            let t = dag.task(i);
            t.budget.is_some() || t.concurrency_key.is_some() || t.agent.is_some()
        })
}

/// Exponential backoff: `base * 2^(failures-1)`, capped.
fn backoff_ms(base_s: f64, failures: u32) -> u64 {
    let exp = 2f64.powi(failures.saturating_sub(1).min(30) as i32);
    ((base_s * exp * 1000.0) as u64).min(MAX_BACKOFF_MS)
}

#[cfg(test)]
pub(super) fn backoff_for_test(base_s: f64, failures: u32) -> u64 {
    backoff_ms(base_s, failures)
}
