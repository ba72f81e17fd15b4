//! People in the loop: approval tasks wait for a decision instead of a worker, and one
//! task of a running run can be cancelled on its own.
//!
//! A waiting task's deadline is its `started_at_ms` (when it began to wait) plus its
//! `timeout_s`: both are stored, so a restarted or standby orchestrator re-arms the
//! same deadline, and the decision it applies is a transition out of `waiting`, which
//! can happen once only.

use super::*;
use crate::dag::approval::{self as spec, OnTimeout};

/// The error kind of a task a person (or its timeout) rejected.
pub const REJECTED: &str = "rejected";

impl RunMachine {
    /// An approval task's dependencies are done: it waits for a decision, on no worker.
    pub(super) fn await_decision(&mut self, i: u32, now_ms: i64, out: &mut Output) {
        let _ = self.set_state(i, Stimulus::AwaitDecision, out);
        let t = &mut self.tasks[i as usize];
        t.started_at_ms = Some(now_ms);
        t.finished_at_ms = None;
        self.record_task(i, now_ms, None, out);
        if let Some(at_ms) = self.deadline(i) {
            out.commands.push(Command::Deadline { task: i, at_ms });
        }
    }

    /// When the decision on waiting task `i` is due, if it has a timeout.
    pub fn deadline(&self, i: u32) -> Option<i64> {
        let t = self.tasks.get(i as usize)?;
        if t.state != TaskState::Waiting {
            return None;
        }
        let task = self.dag.task(i);
        if !spec::is_approval(task) {
            return None;
        }
        let timeout = spec::parse(&task.input).ok()?.timeout_ms?;
        Some(t.started_at_ms.unwrap_or(0) + timeout)
    }

    /// Asks again for the deadline of every waiting task (after a restore).
    pub(super) fn rearm_deadlines(&mut self, out: &mut Output) {
        for i in 0..self.tasks.len() as u32 {
            if let Some(at_ms) = self.deadline(i) {
                out.commands.push(Command::Deadline { task: i, at_ms });
            }
        }
    }

    fn check_waiting(&self, i: u32) -> Result<(), Rejected> {
        if self.state.is_terminal() {
            return Err(Rejected::RunFinished(self.state));
        }
        let t = self.tasks.get(i as usize).ok_or(Rejected::UnknownTask)?;
        if t.state != TaskState::Waiting {
            return Err(Rejected::NotWaiting(t.state));
        }
        Ok(())
    }

    /// A person approved waiting task `i`: it succeeds with `output`, and its
    /// dependents proceed.
    pub fn approve(
        &mut self,
        i: u32,
        output: Value,
        now_ms: i64,
        out: &mut Output,
    ) -> Result<(), Rejected> {
        self.check_waiting(i)?;
        if self.asks_budget(i) {
            return Err(Rejected::BadDecision(
                "the task waits for a budget raise: approve it with \"raise\"".into(),
            ));
        }
        self.set_state(i, Stimulus::Approved, out)?;
        let t = &mut self.tasks[i as usize];
        t.output = Some(output);
        t.error = None;
        t.finished_at_ms = Some(now_ms);
        self.record_task(i, now_ms, None, out);
        self.propagate(i, now_ms, out);
        Ok(())
    }

    /// A person rejected waiting task `i`: it fails with error kind `rejected`.
    pub fn reject(
        &mut self,
        i: u32,
        message: String,
        now_ms: i64,
        out: &mut Output,
    ) -> Result<(), Rejected> {
        self.check_waiting(i)?;
        if self.asks_budget(i) {
            return self.reject_raise(i, message, now_ms, out);
        }
        self.set_state(i, Stimulus::Declined, out)?;
        let failure = TaskFailure {
            kind: REJECTED.into(),
            error_type: None,
            message,
            traceback: None,
        };
        let t = &mut self.tasks[i as usize];
        t.error = Some(Box::new(failure.clone()));
        t.finished_at_ms = Some(now_ms);
        self.record_task(i, now_ms, Some(failure), out);
        self.propagate(i, now_ms, out);
        Ok(())
    }

    /// The deadline of waiting task `i` may have passed: its `on_timeout` applies. A
    /// task already decided answers [`Rejected::NotWaiting`], so the timeout applies
    /// once however often it fires.
    pub fn decision_due(&mut self, i: u32, now_ms: i64, out: &mut Output) -> Result<(), Rejected> {
        self.check_waiting(i)?;
        let Some(at_ms) = self.deadline(i) else {
            return Ok(());
        };
        if now_ms < at_ms {
            out.commands.push(Command::Deadline { task: i, at_ms });
            return Ok(());
        }
        let task = self.dag.task(i);
        let approval = spec::parse(&task.input).map_err(|_| Rejected::UnknownTask)?;
        let waited_s = approval.timeout_ms.unwrap_or(0) as f64 / 1000.0;
        match approval.on_timeout {
            OnTimeout::Approve => {
                let output = serde_json::json!({
                    "approved": true,
                    "comment": format!("no decision within {waited_s} s: approved by on_timeout"),
                    "by": "timeout",
                    "output": null,
                });
                self.approve(i, output, now_ms, out)
            }
            OnTimeout::Reject => self.reject(
                i,
                format!("no decision within {waited_s} s: rejected by on_timeout"),
                now_ms,
                out,
            ),
        }
    }

    /// Cancels task `i` alone: a running attempt is told to stop, its `all_success`
    /// dependents are skipped, and the rest of the run goes on.
    pub fn cancel_task(&mut self, i: u32, now_ms: i64, out: &mut Output) -> Result<(), Rejected> {
        if self.state.is_terminal() {
            return Err(Rejected::RunFinished(self.state));
        }
        let t = self.tasks.get(i as usize).ok_or(Rejected::UnknownTask)?;
        if t.state.is_terminal() {
            return Err(Rejected::AlreadyFinal(t.state));
        }
        let attempt = t.attempt;
        match t.state {
            TaskState::Running | TaskState::Queued => {
                out.commands
                    .push(Command::CancelAttempt { task: i, attempt });
                // A worker may be on it: its call may have been billed.
                let running = t.state == TaskState::Running;
                self.settle(i, attempt, running, out);
            }
            TaskState::Ready => {
                self.waiting.remove(self.waiting_key(i));
            }
            _ => {}
        }
        self.stop_asking(i);
        self.set_state(i, Stimulus::Cancel, out)?;
        let failure = TaskFailure {
            kind: "cancelled".into(),
            error_type: None,
            message: "the task was cancelled".into(),
            traceback: None,
        };
        let t = &mut self.tasks[i as usize];
        t.finished_at_ms = Some(now_ms);
        t.error = Some(Box::new(failure.clone()));
        self.record_task(i, now_ms, Some(failure), out);
        self.propagate(i, now_ms, out);
        Ok(())
    }
}
