//! Turning what the run machines decided into writes: commands into task and control
//! messages, events into rows and live events, and one batch into a [`Flush`].

use super::active::{ActiveRun, Activity, Pushed};
use super::core::{Core, Refusal, Timer};
use super::writer::{Enqueued, Flush, Landed};
use super::{EngineError, RunReply};
use crate::api_types::{LiveEvent, RunEvent, WorkerEvent};
use crate::queue::{AttemptKey, OutTask, QueueEntry};
use crate::state_machine::{AttemptFailure, Command, EventKind, Output, TaskFailure, TaskState};
use crate::store::{EventRow, NewRun, WorkerRow};
use crate::views;
use serde_json::{json, Value};
use std::cmp::Reverse;
use std::collections::HashSet;
use std::sync::Arc;
use worker_protocol::{ControlMessage, TaskKind, TaskMessage, PROTOCOL_VERSION};

/// One task of one run.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct TaskKey {
    pub run: Arc<str>,
    pub task: u32,
}

/// Writes and answers accumulated while handling one batch of inputs.
#[derive(Default)]
pub(super) struct Pending {
    pub(super) flush: Flush,
    pub(super) new_runs: Vec<Arc<str>>,
    pub(super) dirty_tasks: HashSet<TaskKey>,
    pub(super) dirty_runs: HashSet<Arc<str>>,
    pub(super) dirty_workers: HashSet<String>,
    /// Tasks spawned into runs already stored, and tasks whose spec a spawn changed.
    pub(super) new_tasks: Vec<TaskKey>,
    pub(super) respecced: HashSet<TaskKey>,
    /// Callers to answer with their run's row once this batch is stored.
    pub(super) replies: Vec<(RunReply, Arc<str>)>,
}

impl Core {
    /// The writer learnt where task messages landed in Redis.
    pub(super) fn on_enqueued(&mut self, landed: Enqueued) {
        for Landed {
            attempt: key,
            queue,
            entry,
        } in landed
        {
            let (task, attempt) = (key.task, key.attempt);
            let id = match entry {
                Ok(id) => id,
                Err(why) => {
                    tracing::warn!(run = %key.run, task, attempt, %why, "Redis refused a task message; failing the task");
                    metrics::counter!("apex_tasks_refused_total", "reason" => "enqueue_failed")
                        .increment(1);
                    let message = format!("Redis refused the task message: {why}");
                    self.refused.push(Refusal {
                        key,
                        failure: refusal("enqueue_failed", message),
                    });
                    continue;
                }
            };
            let entry = QueueEntry { queue, id };
            let current = self.runs.get_mut(&key.run).filter(|r| {
                let t = r.machine.task(task);
                t.attempt == attempt && matches!(t.state, TaskState::Queued | TaskState::Running)
            });
            match current {
                Some(run) => {
                    run.entries.insert(task, Pushed { attempt, entry });
                }
                // Cancelled (or overtaken) before Redis even answered: no worker may start it.
                None => self.pending.flush.outgoing.task_acks.push(entry),
            }
        }
        self.fail_refused();
    }

    /// Fails the attempts that could not be sent; other tasks and runs go on.
    pub(super) fn fail_refused(&mut self) {
        while let Some(Refusal { key, failure }) = self.refused.pop() {
            let now = self.config.clock.now_ms();
            let failure = AttemptFailure {
                failure,
                retryable: false,
                retry_after_s: None,
                started_at_ms: None,
                usage: None,
            };
            let (task, attempt) = (key.task, key.attempt);
            let _ = self.apply(&key.run, |m, o| {
                m.failed(task, attempt, failure, None, now, o)
            });
        }
    }

    pub(super) fn absorb(&mut self, id: &Arc<str>, out: &Output) {
        let Some(run) = self.runs.get_mut(id) else {
            return;
        };
        let now = self.config.clock.now_ms();
        for c in &out.commands {
            match *c {
                Command::Dispatch { task, attempt } => {
                    let (input, upstream) = input_bytes(run, task);
                    let limit = self.config.max_task_input_bytes;
                    if input + upstream > limit {
                        let message = format!(
                            "the task's input ({input} bytes) and upstream outputs ({upstream} bytes) come to {} bytes, over the limit of {limit} bytes (--max-task-input-bytes)",
                            input + upstream
                        );
                        metrics::counter!("apex_tasks_refused_total", "reason" => "input_too_large").increment(1);
                        self.refused.push(Refusal {
                            key: AttemptKey {
                                run: Arc::clone(id),
                                task,
                                attempt,
                            },
                            failure: refusal("input_too_large", message),
                        });
                        continue;
                    }
                    let (queue, json) = task_message(run, task, attempt, now);
                    let attempt = AttemptKey {
                        run: Arc::clone(id),
                        task,
                        attempt,
                    };
                    self.pending.flush.outgoing.tasks.push(OutTask {
                        queue,
                        json,
                        attempt,
                    });
                }
                Command::ScheduleRetry {
                    task,
                    attempt,
                    delay_ms,
                } => {
                    metrics::counter!("apex_task_retries_total").increment(1);
                    // Jitter spreads retries of tasks that failed together.
                    let jitter = 1.0 + rand::random::<f64>() * 0.2;
                    let due = now + (delay_ms as f64 * jitter) as i64;
                    self.timers.push(Reverse(Timer {
                        due_ms: due,
                        key: AttemptKey {
                            run: Arc::clone(id),
                            task,
                            attempt,
                        },
                    }));
                }
                Command::Deadline { task, at_ms } => {
                    self.deadlines.push(Reverse(super::decisions::Deadline {
                        due_ms: at_ms,
                        run: Arc::clone(id),
                        task,
                    }))
                }
                Command::CancelAttempt { task, attempt } => {
                    // Not yet read by any worker: delete it, so none ever starts it.
                    if let Some(pushed) = run.entries.remove(&task).filter(|e| e.attempt == attempt)
                    {
                        self.pending.flush.outgoing.task_acks.push(pushed.entry);
                    }
                    let msg = ControlMessage::Cancel {
                        v: PROTOCOL_VERSION,
                        run_id: id.to_string(),
                        task_id: run.machine.dag().task(task).id.clone(),
                        attempt,
                    };
                    self.pending
                        .flush
                        .outgoing
                        .controls
                        .push(serde_json::to_string(&msg).expect("control serialises"));
                }
            }
        }
        let dag = run.machine.dag();
        for e in &out.events {
            let (task_id, kind, state, data) = match &e.kind {
                EventKind::Task { task, state } => (
                    Some(dag.task(*task).id.clone()),
                    "task",
                    Some(state.as_str()),
                    e.error
                        .as_ref()
                        .map(|f| serde_json::to_value(f).unwrap_or(Value::Null)),
                ),
                EventKind::Run { state } => (None, "run", Some(state.as_str()), None),
                EventKind::Log {
                    task,
                    level,
                    message,
                } => (
                    Some(dag.task(*task).id.clone()),
                    "log",
                    None,
                    Some(json!({"level": level, "message": message})),
                ),
            };
            let row = EventRow {
                run_id: id.to_string(),
                seq: e.seq,
                task_id,
                kind: kind.to_owned(),
                state: state.map(str::to_owned),
                attempt: e.attempt,
                worker_id: e.worker_id.as_deref().map(str::to_owned),
                at_ms: e.at_ms,
                data,
                by: self.actor.as_deref().map(str::to_owned),
            };
            self.pending.flush.live.push((
                Some(Arc::clone(id)),
                Some(e.seq),
                LiveEvent::Stored(views::event_view(&row)),
            ));
            self.pending.flush.batch.events.push(row);
            if let EventKind::Task { task, state } = &e.kind {
                if state.is_terminal() || *state == TaskState::Ready {
                    run.progress.remove(task);
                }
            }
            if let EventKind::Run { state } = &e.kind {
                run.finished_at = state.is_terminal().then_some(now);
                if state.is_terminal() {
                    metrics::counter!("apex_runs_finished_total", "state" => state.as_str())
                        .increment(1);
                }
            }
        }
        for &t in &out.dirty {
            self.pending.dirty_tasks.insert(TaskKey {
                run: Arc::clone(id),
                task: t,
            });
            let task = run.machine.task(t);
            match task.state {
                TaskState::Queued => {}
                TaskState::Running => {
                    let attempt = task.attempt;
                    if run.machine.dag().task(t).idle_timeout_s.is_some()
                        && run.activity.get(&t).is_none_or(|a| a.attempt != attempt)
                    {
                        let last_ms = now;
                        run.activity.insert(t, Activity { attempt, last_ms });
                    }
                }
                _ => {
                    run.entries.remove(&t);
                    run.activity.remove(&t);
                    run.output_sizes.remove(&t);
                    run.logs.forget(t);
                    if self.limiter.holds(id, t) {
                        // A freed slot may be what a task of any run waits for.
                        for key in self.limiter.release(id, t) {
                            self.parking.freed(&key);
                        }
                        self.admit_due = true;
                    }
                }
            }
        }
        if run.machine.has_waiting() {
            let changed = !out.dirty.is_empty()
                || !out.respecced.is_empty()
                || out.run_changed
                || out.options_changed;
            // What the run's own admission changed cannot free it further.
            if changed && self.visiting.as_ref() != Some(id) {
                self.parking.ready(id);
                self.admit_due = true;
            } else {
                self.parking.known(id);
            }
        } else if !out.dirty.is_empty() {
            self.parking.forget(id);
        }
        for &t in &out.new_tasks {
            self.pending.new_tasks.push(TaskKey {
                run: Arc::clone(id),
                task: t,
            });
        }
        for &t in &out.respecced {
            self.pending.respecced.insert(TaskKey {
                run: Arc::clone(id),
                task: t,
            });
        }
        if out.run_changed {
            self.pending.dirty_runs.insert(Arc::clone(id));
        }
        if out.options_changed {
            // Stored apart from the run's row, which is written far more often.
            let options = Arc::clone(&run.machine.dag().options);
            self.pending
                .flush
                .batch
                .options
                .push((id.to_string(), options));
        }
    }

    /// Turns what this batch changed into one [`Flush`] for the writer.
    pub(super) async fn flush(&mut self) {
        let mut p = std::mem::take(&mut self.pending);
        let new: HashSet<Arc<str>> = p.new_runs.iter().cloned().collect();
        // A spawn changes its dependents' `depends_on`: their rows are written again as
        // well, so they carry this commit's `rev` and a reader of changes sees them.
        p.dirty_tasks.extend(p.respecced.iter().cloned());
        // Every task row written carries its run's sequence as `rev`, and the run's row
        // (that sequence as `last_seq`) goes in the same commit, even when nothing else
        // of it changed (a retry that waits its turn): a cursor read from `last_seq` is
        // then never behind a row already written, and an engine that restarts resumes
        // the sequence at or past every stored `rev`.
        for key in p.dirty_tasks.iter().chain(&p.new_tasks) {
            p.dirty_runs.insert(Arc::clone(&key.run));
        }
        for id in &p.new_runs {
            let Some(run) = self.runs.get(id) else {
                continue;
            };
            let dag = run.machine.dag();
            let tasks = (0..dag.len() as u32).map(|i| run.task_row(i)).collect();
            p.flush.batch.new_runs.push(NewRun {
                run: run.row(),
                dag: Arc::clone(dag),
                tasks,
            });
        }
        for TaskKey { run: id, task: i } in &p.new_tasks {
            if new.contains(id) {
                continue;
            }
            if let Some(run) = self.runs.get(id) {
                let spec = run.machine.dag().task(*i).clone();
                p.flush.batch.new_tasks.push((spec, run.task_row(*i)));
            }
        }
        for TaskKey { run: id, task: i } in &p.respecced {
            if new.contains(id) {
                continue;
            }
            if let Some(run) = self.runs.get(id) {
                let spec = run.machine.dag().task(*i).clone();
                p.flush.batch.specs.push((id.to_string(), spec));
            }
        }
        for TaskKey { run: id, task: i } in &p.dirty_tasks {
            if new.contains(id) {
                continue;
            }
            if let Some(run) = self.runs.get(id) {
                p.flush.batch.tasks.push(run.task_row(*i));
            }
        }
        for id in &p.dirty_runs {
            let Some(run) = self.runs.get(id) else {
                continue;
            };
            let row = run.row();
            let change = RunEvent {
                run: views::summary(&row),
                seq: 0,
                stored_at_ms: None,
            };
            let event = if new.contains(id) {
                LiveEvent::RunCreated(change)
            } else {
                LiveEvent::RunUpdated(change)
            };
            p.flush.live.push((None, None, event));
            if !new.contains(id) {
                p.flush.batch.runs.push(row);
            }
        }
        for id in &p.dirty_workers {
            let Some(w) = self.workers.get(id) else {
                continue;
            };
            let info = serde_json::to_value(&w.info).unwrap_or(Value::Null);
            let worker = views::worker(&w.info, w.state.as_str(), w.last_heartbeat_ms);
            p.flush.live.push((
                None,
                None,
                LiveEvent::Worker(WorkerEvent {
                    worker,
                    seq: 0,
                    stored_at_ms: None,
                }),
            ));
            p.flush.batch.workers.push(WorkerRow {
                id: id.clone(),
                info,
                state: w.state.as_str().to_owned(),
                last_heartbeat_ms: w.last_heartbeat_ms,
            });
        }
        for (reply, id) in p.replies {
            match self.runs.get(&id) {
                Some(run) => p.flush.replies.push((reply, run.row())),
                None => {
                    let _ = reply.send(Err(EngineError::RunNotFound(id.to_string())));
                }
            }
        }
        if p.flush.is_empty() {
            return;
        }
        if self.flush_tx.send(p.flush).await.is_err() {
            tracing::error!("the writer stopped; writes of this batch are lost from memory but not from the results stream");
        }
    }
}

/// A failure of an attempt that never reached a worker.
pub(super) fn refusal(kind: &str, message: String) -> TaskFailure {
    TaskFailure {
        kind: kind.to_owned(),
        error_type: None,
        message,
        traceback: None,
    }
}

/// Encoded bytes of a task's input and of the upstream outputs its message carries.
pub(super) fn input_bytes(run: &mut ActiveRun, task: u32) -> (usize, usize) {
    let dag = run.machine.dag();
    let input = crate::dag::json_size(&dag.task(task).input);
    let mut upstream = 0;
    for &p in dag.parents(task) {
        upstream += *run.output_sizes.entry(p).or_insert_with(|| {
            run.machine
                .task(p)
                .output
                .as_ref()
                .map_or(4, crate::dag::json_size)
        });
    }
    (input, upstream)
}

/// The task message for one attempt, and the queue it goes to.
pub(super) fn task_message(run: &ActiveRun, task: u32, attempt: u32, now: i64) -> (String, String) {
    let dag = run.machine.dag();
    let spec = dag.task(task);
    let upstream = dag
        .parents(task)
        .iter()
        .map(|&p| {
            (
                dag.task(p).id.clone(),
                run.machine.task(p).output.clone().unwrap_or(Value::Null),
            )
        })
        .collect();
    let queue = dag.queue_of(task).to_owned();
    let msg = TaskMessage {
        v: PROTOCOL_VERSION,
        kind: TaskKind::Task,
        run_id: run.id.to_string(),
        task_id: spec.id.clone(),
        attempt,
        handler: spec.handler.clone(),
        input: spec.input.clone(),
        upstream,
        queue: queue.clone(),
        timeout_s: spec.timeout_s,
        idempotency_key: TaskMessage::idempotency_key_for(&run.id, &spec.id, attempt),
        priority: spec.priority,
        enqueued_at_ms: now,
        agent: spec
            .agent
            .as_ref()
            .and_then(|a| dag.options.agents.get(a).map(|s| s.config(a))),
        traceparent: crate::telemetry::traceparent(&run.id, &spec.id, attempt),
    };
    (
        queue,
        serde_json::to_string(&msg).expect("task message serialises"),
    )
}
