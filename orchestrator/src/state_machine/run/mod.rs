//! One run's lifecycle as a pure state machine: stimuli in, [`Output`] out.
//!
//! The machine keeps an indegree-style counter per task (`unresolved`: dependencies not
//! yet terminal), so a task's completion costs O(its children). It does no I/O and reads
//! no clock: callers pass `now_ms`, and carry out the [`Command`]s it returns.
//!
//! Split by job: [`types`] (what goes in and out), `reports` (what workers report),
//! `admission` (limits and budgets before dispatch), `control` (cancel, rerun, spawn).

use super::budget::{self, estimate, limit_keys, shortfall, Change, Charges};
use super::states::{
    transition, IllegalTransition, RunState, Stimulus, TaskState, ALL_TASK_STATES,
};
use crate::dag::{approval, grow, Dag, KeyLimit, Limits, Trigger, DEFAULT_RETRY_BACKOFF_S};
use serde_json::Value;
use std::cmp::Reverse;
use std::collections::HashMap;
use std::sync::Arc;
pub use worker_protocol::Usage;
mod admission;
mod approvals;
mod budget_ask;
mod control;
mod reports;
mod reuse;
mod types;
mod waiting;

pub use budget_ask::AWAITING_BUDGET;
pub use types::{
    AttemptFailure, AttemptSuccess, Command, Event, EventKind, Output, Rejected, TaskFailure,
    TaskRuntime,
};

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
    counts: [u32; crate::state_machine::TASK_STATE_COUNT],
    /// Last event sequence number used.
    seq: u64,
    finished_at_ms: Option<i64>,
    /// True when any task may have to wait in `ready` for a limit or budget; a run
    /// without any dispatches straight from `pending`.
    gated: bool,
    /// Ready tasks waiting to be admitted, highest priority first, then in order.
    waiting: waiting::Waiting,
    /// What attempts in flight are expected to spend, reserved against the budget (by
    /// task: a task has one attempt in flight at most).
    reserved: HashMap<u32, Usage>,
    /// What every attempt was charged so far, in flight or not: the sum of the tasks'
    /// `usage`.
    spent: Usage,
    /// Why the run stopped dispatching: its budget would be exceeded.
    exhausted: Option<String>,
    /// The task waiting for a person to raise the run's budget: until then the run
    /// dispatches nothing more.
    asking: Option<u32>,
    /// Tasks whose dependencies are met but which were left `pending` because the
    /// output had no room ([`Output::room`]); [`RunMachine::release_deferred`] resolves
    /// them. Not stored: after a restart [`RunMachine::resume`] finds them again.
    deferred: Vec<u32>,
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
        let mut counts = [0u32; crate::state_machine::TASK_STATE_COUNT];
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
            waiting: waiting::Waiting::default(),
            reserved: HashMap::new(),
            spent: Usage::default(),
            exhausted: None,
            asking: None,
            deferred: Vec::new(),
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
            counts: [0; crate::state_machine::TASK_STATE_COUNT],
            seq,
            finished_at_ms,
            gated,
            waiting: waiting::Waiting::default(),
            reserved: HashMap::new(),
            spent: Usage::default(),
            exhausted: None,
            asking: None,
            deferred: Vec::new(),
        };
        for (i, t) in m.tasks.iter().enumerate() {
            if t.state == TaskState::Waiting
                && budget_ask::asks_for(t) == Some(budget_ask::Scope::Run)
            {
                m.asking = Some(i as u32);
            }
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
                        let spec = m.dag.task(i as u32);
                        let class = (spec.agent.as_deref(), spec.concurrency_key.as_deref());
                        m.waiting.insert((Reverse(spec.priority), i as u32), class);
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

    /// True when tasks are deferred for lack of room (see [`RunMachine::release_deferred`]).
    pub fn has_deferred(&self) -> bool {
        !self.deferred.is_empty()
    }

    /// How many tasks are deferred (a few may since have been cancelled or re-run).
    pub fn deferred_len(&self) -> usize {
        self.deferred.len()
    }

    /// The deferred tasks still to go: ready to run, held only for room, so queue depth
    /// (what workers are scaled on) counts them.
    pub fn deferred_tasks(&self) -> impl Iterator<Item = u32> + '_ {
        self.deferred.iter().copied().filter(|&i| {
            let t = &self.tasks[i as usize];
            t.state == TaskState::Pending && t.unresolved == 0
        })
    }

    /// Resolves deferred tasks, as many as `out`'s room allows; the rest stay deferred.
    /// Entries a cancel or rerun overtook (no longer pending) are dropped.
    pub fn release_deferred(&mut self, now_ms: i64, out: &mut Output) {
        if self.state.is_terminal() {
            self.deferred.clear();
            return;
        }
        let n = out.room.unwrap_or(usize::MAX).min(self.deferred.len());
        let todo: Vec<u32> = self
            .deferred
            .split_off(self.deferred.len() - n)
            .into_iter()
            .filter(|&i| {
                let t = &self.tasks[i as usize];
                t.state == TaskState::Pending && t.unresolved == 0
            })
            .collect();
        self.resolve(todo, now_ms, out);
        self.complete_if_done(now_ms, out);
    }

    /// How many tasks wait in `ready` for admission (not a backoff).
    pub fn waiting_count(&self) -> usize {
        self.waiting.len()
    }

    /// True when task `i` waits for admission (a limit or budget), not a backoff.
    pub fn is_waiting(&self, i: u32) -> bool {
        self.waiting.contains(i)
    }

    /// The keys task `i` holds while in flight (see [`Gate`]).
    pub fn limit_keys(&self, i: u32) -> Vec<(String, KeyLimit)> {
        limit_keys(&self.dag, i)
    }

    /// Why the run stopped dispatching, when its budget ran out.
    pub fn exhausted(&self) -> Option<&str> {
        self.exhausted.as_deref()
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
    pub fn counts(&self) -> [u32; crate::state_machine::TASK_STATE_COUNT] {
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
        // Every deferred task is among these.
        self.deferred.clear();
        let stuck: Vec<u32> = (0..self.tasks.len() as u32)
            .filter(|&i| {
                self.tasks[i as usize].state == TaskState::Pending
                    && self.tasks[i as usize].unresolved == 0
            })
            .collect();
        self.resolve(stuck, now_ms, out);
        self.rearm_deadlines(out);
        self.complete_if_done(now_ms, out);
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
    /// Once `out` has no room left, the rest stay `pending` and are deferred.
    fn resolve(&mut self, mut todo: Vec<u32>, now_ms: i64, out: &mut Output) {
        while let Some(i) = todo.pop() {
            if !out.take_room() {
                self.deferred.append(&mut todo);
                self.deferred.push(i);
                return;
            }
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
            } else if approval::is_approval(self.dag.task(i)) {
                self.await_decision(i, now_ms, out);
            } else if self.gated {
                let _ = self.set_state(i, Stimulus::DepsMetGated, out);
                self.record_task(i, now_ms, None, out);
                self.wait(i);
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
