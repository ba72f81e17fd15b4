//! Worker reports: checked against the engine's records, then turned into stimuli
//! of the run machines (and usage, progress and logs).

use super::core::Core;
use super::fleet::{WorkerSeen, WorkerState};
use super::log_cap::{self, Verdict};
use crate::api_types::{LiveEvent, ProgressEvent};
use crate::queue::QueueEntry;
use crate::state_machine::{budget, AttemptFailure, AttemptSuccess, TaskFailure, TaskState};
use std::sync::Arc;
use worker_protocol::{ErrorKind, Outcome, TaskError, WorkerMessage};

impl Core {
    pub(super) fn on_worker_message(&mut self, msg: WorkerMessage) {
        match msg {
            WorkerMessage::Started(s) => {
                let a = s.attempt;
                if self.verify_report(&a).is_err() {
                    return;
                }
                let worker = self.intern_worker(&a.worker_id);
                self.on_task(&a.run_id, &a.task_id, |m, i, o| {
                    m.started(i, a.attempt, worker, s.at_ms, o)
                });
                self.touch(&a.run_id, &a.task_id, a.attempt);
            }
            WorkerMessage::Result(r) => {
                let a = &r.attempt;
                match self.verify_report(a) {
                    Ok(Some(entry)) => self.pending.flush.outgoing.task_acks.push(entry),
                    Ok(None) => {}
                    Err(()) => return,
                }
                let worker = self.intern_worker(&a.worker_id);
                let duration_s = (r.finished_at_ms - r.started_at_ms).max(0) as f64 / 1000.0;
                let attempt = a.attempt;
                let outcome = r.outcome;
                let (run_id, task_id) = (a.run_id.clone(), a.task_id.clone());
                if let Some(u) = &r.usage {
                    self.report_tokens(&run_id, &task_id, attempt, budget::tokens(u));
                }
                let too_large = outcome == Outcome::Succeeded
                    && crate::dag::json_size(&r.output) > self.config.max_output_bytes;
                let (outcome, error) = if too_large {
                    let error = output_too_large(self.config.max_output_bytes);
                    (Outcome::Failed, Some(error))
                } else {
                    (outcome, r.error)
                };
                let applied = match outcome {
                    Outcome::Succeeded => self.on_task(&run_id, &task_id, |m, i, o| {
                        let success = AttemptSuccess {
                            output: r.output,
                            worker,
                            started_at_ms: r.started_at_ms,
                            finished_at_ms: r.finished_at_ms,
                            usage: r.usage,
                            children: r.children,
                        };
                        m.succeeded(i, attempt, success, o)
                    }),
                    Outcome::Failed => {
                        let e = error.unwrap_or_else(missing_error);
                        let failure = attempt_failure(e, r.started_at_ms, r.usage);
                        self.on_task(&run_id, &task_id, |m, i, o| {
                            m.failed(i, attempt, failure, Some(worker), r.finished_at_ms, o)
                        })
                    }
                };
                if let Some(handler) = applied {
                    let outcome = if outcome == Outcome::Succeeded {
                        "succeeded"
                    } else {
                        "failed"
                    };
                    metrics::counter!("apex_task_attempts_total", "handler" => handler.clone(), "outcome" => outcome).increment(1);
                    metrics::histogram!("apex_task_duration_seconds", "handler" => handler, "outcome" => outcome).record(duration_s);
                }
            }
            WorkerMessage::Released(r) => {
                let a = r.attempt;
                match self.verify_report(&a) {
                    Ok(Some(entry)) => self.pending.flush.outgoing.task_acks.push(entry),
                    Ok(None) => {}
                    Err(()) => return,
                }
                let now = self.config.clock.now_ms();
                self.on_task(&a.run_id, &a.task_id, |m, i, o| {
                    m.released(i, a.attempt, now, o)
                });
            }
            WorkerMessage::Progress(p) => {
                self.count_progress_usage(&p);
                let Some(run) = self.runs.get_mut(p.run_id.as_str()) else {
                    return;
                };
                let Some(i) = run.machine.dag().index_of(&p.task_id) else {
                    return;
                };
                // Streamed text alone says nothing about how far along the task is.
                let text_only =
                    p.text_delta.is_some() && p.progress.is_none() && p.message.is_empty();
                if !text_only {
                    run.progress.insert(i, (p.progress, p.message.clone()));
                }
                if let Some(seen) = run.activity.get_mut(&i) {
                    if seen.attempt == p.attempt {
                        seen.last_ms = self.config.clock.now_ms();
                    }
                }
                // Live only, never stored per delta: the bus keeps the text so far for
                // clients that join mid-answer, and the final text is in the output.
                let event = LiveEvent::Progress(ProgressEvent {
                    run_id: p.run_id,
                    task_id: p.task_id,
                    attempt: p.attempt,
                    progress: p.progress,
                    message: p.message,
                    at_ms: p.at_ms,
                    text_delta: p.text_delta,
                    stored_at_ms: None,
                });
                self.pending
                    .flush
                    .live
                    .push((Some(Arc::clone(&run.id)), None, event));
            }
            WorkerMessage::Log(l) => {
                let (run_id, task_id, attempt) = (l.run_id.clone(), l.task_id.clone(), l.attempt);
                self.touch(&run_id, &task_id, attempt);
                let Some(run) = self.runs.get_mut(run_id.as_str()) else {
                    return;
                };
                let Some(i) = run.machine.dag().index_of(&task_id) else {
                    return;
                };
                let (level, message) =
                    match run
                        .logs
                        .admit(i, attempt, l.message.len(), self.config.log_limits)
                    {
                        Verdict::Keep(len) => (l.level, log_cap::cut(l.message, len)),
                        Verdict::Notice(notice) => ("warning".to_owned(), notice),
                        Verdict::Drop => {
                            metrics::counter!("apex_log_lines_dropped_total").increment(1);
                            return;
                        }
                    };
                self.on_task(&run_id, &task_id, |m, i, o| {
                    m.log(i, attempt, level, message, l.at_ms, o)
                });
            }
            WorkerMessage::Heartbeat(h) => {
                let state = WorkerState::from(h.worker.state);
                let id = h.worker.id.clone();
                let interned = self.intern_worker(&id);
                let joined = !self.workers.get(&id).is_some_and(|w| w.state.is_live());
                self.workers.insert(
                    id.clone(),
                    WorkerSeen {
                        info: h.worker,
                        state,
                        last_heartbeat_ms: h.at_ms.max(self.config.clock.now_ms()),
                        id: interned,
                    },
                );
                if joined {
                    tracing::info!(worker = %id, "worker joined");
                }
                self.pending.dirty_workers.insert(id);
            }
            WorkerMessage::WorkerStopped(w) => {
                if let Some(seen) = self.workers.get_mut(&w.worker_id) {
                    seen.state = WorkerState::Stopped;
                    seen.last_heartbeat_ms = w.at_ms;
                    seen.info.in_flight = 0;
                    tracing::info!(worker = %w.worker_id, "worker stopped");
                    self.pending.dirty_workers.insert(w.worker_id);
                }
            }
        }
    }

    /// Counts the usage a progress report states (its attempt's so far) at once, so
    /// budgets and the run's usage move while the call is in flight.
    pub(super) fn count_progress_usage(&mut self, p: &worker_protocol::Progress) {
        let Some(usage) = &p.usage else {
            return;
        };
        self.on_task(&p.run_id, &p.task_id, |m, i, o| {
            m.report_usage(i, p.attempt, &p.worker_id, usage, o)
        });
    }

    /// Records a sign of life of a running attempt, for its idle timeout.
    pub(super) fn touch(&mut self, run_id: &str, task_id: &str, attempt: u32) {
        let Some(run) = self.runs.get_mut(run_id) else {
            return;
        };
        let Some(i) = run.machine.dag().index_of(task_id) else {
            return;
        };
        if let Some(seen) = run.activity.get_mut(&i) {
            if seen.attempt == attempt {
                seen.last_ms = self.config.clock.now_ms();
            }
        }
    }

    /// Checks a worker's report against what the engine itself recorded, since Redis is
    /// not a trusted channel: the queue entry it names must be the one this attempt was
    /// pushed as, and a running attempt's reports must come from the worker that
    /// started it. Answers the entry to acknowledge, if the engine knows it (it does
    /// not yet when the report overtakes the push's confirmation, nor for an attempt
    /// that already ended: those entries are acknowledged when confirmed, or reclaimed).
    /// A report that fails is dropped whole and counted.
    pub(super) fn verify_report(
        &mut self,
        a: &worker_protocol::AttemptRef,
    ) -> Result<Option<QueueEntry>, ()> {
        let Some(run) = self.runs.get(a.run_id.as_str()) else {
            return Ok(None);
        };
        let Some(i) = run.machine.dag().index_of(&a.task_id) else {
            return Ok(None);
        };
        let reject = |reason: &'static str| {
            metrics::counter!("apex_worker_reports_rejected_total", "reason" => reason)
                .increment(1);
            tracing::warn!(run = %a.run_id, task = %a.task_id, attempt = a.attempt, worker = %a.worker_id, reason, "dropped a worker report that does not match the engine's records");
            Err(())
        };
        let task = run.machine.task(i);
        if task.attempt == a.attempt && task.state == TaskState::Running {
            if let Some(w) = &task.worker_id {
                if **w != *a.worker_id {
                    return reject("other_worker");
                }
            }
        }
        match run.entries.get(&i) {
            Some(pushed) if pushed.attempt == a.attempt => {
                if pushed.entry.queue == a.queue && pushed.entry.id == a.msg_id {
                    Ok(Some(pushed.entry.clone()))
                } else {
                    reject("foreign_entry")
                }
            }
            _ => Ok(None),
        }
    }

    pub(super) fn intern_worker(&mut self, id: &str) -> Arc<str> {
        match self.workers.get(id) {
            Some(w) => Arc::clone(&w.id),
            None => Arc::from(id),
        }
    }

    /// Counts what an attempt reported against the token windows of its keys.
    pub(super) fn report_tokens(&mut self, run_id: &str, task_id: &str, attempt: u32, tokens: u64) {
        if let Some((id, run)) = self.runs.get_key_value(run_id) {
            if let Some(i) = run.machine.dag().index_of(task_id) {
                for key in self.limiter.report_tokens(id, i, attempt, tokens) {
                    self.parking.freed(&key);
                    self.admit_due = true;
                }
            }
        }
    }
}

/// The error of a succeeded attempt whose output is over the limit.
fn output_too_large(max_output_bytes: usize) -> TaskError {
    TaskError {
        kind: ErrorKind::InvalidOutput,
        error_type: None,
        message: format!("the output is larger than the limit of {max_output_bytes} bytes"),
        traceback: None,
        retryable: false,
        retry_after_s: None,
    }
}

/// What a failure report without an error counts as.
fn missing_error() -> TaskError {
    TaskError {
        kind: ErrorKind::Exception,
        error_type: None,
        message: "the worker reported a failure without an error".into(),
        traceback: None,
        retryable: true,
        retry_after_s: None,
    }
}

/// A worker's error as the run machine takes it.
fn attempt_failure(
    e: TaskError,
    started_at_ms: i64,
    usage: Option<worker_protocol::Usage>,
) -> AttemptFailure {
    AttemptFailure {
        failure: TaskFailure {
            kind: serde_json::to_value(e.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| "exception".into()),
            error_type: e.error_type,
            message: e.message,
            traceback: e.traceback,
        },
        retryable: e.retryable,
        retry_after_s: e.retry_after_s,
        started_at_ms: Some(started_at_ms),
        usage,
    }
}
