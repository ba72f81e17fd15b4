//! Bringing the engine back in step with the store and Redis: recovery at start,
//! reconciling with what Redis holds, attempts lost with their worker, and Redis
//! losing its data.

use super::active::{self, Pushed};
use super::core::{Core, InFlight, Timer};
use super::fleet::{WorkerSeen, WorkerState};
use super::redis_watch::{InRedis, NamedAttempt};
use super::EngineError;
use crate::queue::{AttemptKey, QueueEntry};
use crate::state_machine::TaskState;
use std::cmp::Reverse;
use std::sync::Arc;
use worker_protocol::{TaskMessage, WorkerInfo};

impl Core {
    /// Loads every running run and known worker from the store, and carries out what
    /// was decided but not done before the last stop. Returns the attempts the store
    /// says are queued or running, for [`Core::reconcile`].
    pub async fn recover(&mut self) -> Result<InFlight, EngineError> {
        let mut in_flight = Vec::new();
        for w in self.store.list_workers().await? {
            if let Ok(info) = serde_json::from_value::<WorkerInfo>(w.info) {
                let state = WorkerState::from_stored(&w.state);
                let id: Arc<str> = Arc::from(w.id.as_str());
                self.workers.insert(
                    w.id,
                    WorkerSeen {
                        info,
                        state,
                        last_heartbeat_ms: w.last_heartbeat_ms,
                        id,
                    },
                );
            }
        }
        let active = self.store.active_runs().await?;
        let now = self.config.clock.now_ms();
        for run in &active {
            match active::load(self.store.as_ref(), &run.id, now).await {
                Ok(Some(r)) => {
                    let id = Arc::clone(&r.id);
                    for (i, t) in r.machine.tasks().iter().enumerate() {
                        if matches!(t.state, TaskState::Queued | TaskState::Running) {
                            in_flight.push(AttemptKey {
                                run: Arc::clone(&id),
                                task: i as u32,
                                attempt: t.attempt,
                            });
                            // Attempts still out count against shared limits as before.
                            let keys = r.machine.limit_keys(i as u32);
                            self.limiter.hold(&id, i as u32, &keys);
                        }
                    }
                    self.runs.insert(Arc::clone(&id), r);
                    self.schedule_stranded_retries(&id, now);
                    let _ = self.apply(&id, |m, o| {
                        m.resume(now, o);
                        Ok(())
                    });
                    // Tasks restored waiting are admitted like any that just became ready.
                    if self.runs.get(&id).is_some_and(|r| r.machine.has_waiting()) {
                        self.parking.ready(&id);
                        self.admit_due = true;
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::error!(run = %run.id, error = %e, "cannot recover run"),
            }
        }
        if !active.is_empty() {
            tracing::info!(runs = active.len(), "recovered running runs from the store");
        }
        self.admit_waiting();
        self.flush().await;
        Ok(in_flight)
    }

    /// Queues again each attempt of `in_flight` whose message Redis does not hold.
    pub async fn reconcile(&mut self, in_flight: InFlight, present: &InRedis) {
        let now = self.config.clock.now_ms();
        let mut requeued = 0;
        for AttemptKey {
            run: id,
            task: i,
            attempt,
        } in in_flight
        {
            let Some(run) = self.runs.get_mut(&id) else {
                continue;
            };
            let named = NamedAttempt {
                run_id: id.to_string(),
                task_id: run.machine.dag().task(i).id.clone(),
                attempt,
            };
            if let Some(entry) = present.get(&named) {
                // Known again, so reports can be checked against it after a restart.
                let entry = entry.clone();
                run.entries.insert(i, Pushed { attempt, entry });
                continue;
            }
            if self
                .apply(&id, |m, o| m.released(i, attempt, now, o))
                .is_ok()
            {
                requeued += 1;
            }
        }
        if requeued > 0 {
            tracing::warn!(
                tasks = requeued,
                "queued again tasks the store had queued but Redis did not hold"
            );
        }
        self.flush().await;
    }

    /// Tasks found in `ready` after a restart lost their backoff timer: retry them now.
    pub(super) fn schedule_stranded_retries(&mut self, id: &Arc<str>, now: i64) {
        let run = &self.runs[id];
        for (i, t) in run.machine.tasks().iter().enumerate() {
            if t.state == TaskState::Ready {
                self.timers.push(Reverse(Timer {
                    due_ms: now,
                    key: AttemptKey {
                        run: Arc::clone(id),
                        task: i as u32,
                        attempt: t.attempt,
                    },
                }));
            }
        }
    }

    /// Entries whose worker stopped renewing them: the attempts are lost.
    pub(super) fn on_reclaimed(&mut self, entries: Vec<(String, crate::queue::WorkerEntry)>) {
        let now = self.config.clock.now_ms();
        for (queue, entry) in entries {
            self.pending.flush.outgoing.task_acks.push(QueueEntry {
                queue,
                id: entry.id.clone(),
            });
            let Some(msg) = entry
                .body
                .as_deref()
                .and_then(|b| serde_json::from_slice::<TaskMessage>(b).ok())
            else {
                continue;
            };
            let attempt = msg.attempt;
            if self
                .on_task(&msg.run_id, &msg.task_id, |m, i, o| {
                    m.lost(i, attempt, now, o)
                })
                .is_some()
            {
                metrics::counter!("apex_attempts_lost_total").increment(1);
                tracing::warn!(run = %msg.run_id, task = %msg.task_id, attempt, "attempt lost with its worker; queued again");
            }
        }
    }

    /// Redis lost everything: every queued or running attempt is queued again.
    pub(super) fn on_redis_reset(&mut self) {
        let now = self.config.clock.now_ms();
        let ids: Vec<Arc<str>> = self
            .runs
            .iter()
            .filter(|(_, r)| !r.machine.state().is_terminal())
            .map(|(id, _)| Arc::clone(id))
            .collect();
        let mut requeued = 0;
        for id in ids {
            let run = self.runs.get_mut(&id).expect("listed above");
            run.entries.clear();
            let live: Vec<(u32, u32)> = run
                .machine
                .tasks()
                .iter()
                .enumerate()
                .filter(|(_, t)| matches!(t.state, TaskState::Queued | TaskState::Running))
                .map(|(i, t)| (i as u32, t.attempt))
                .collect();
            for (i, attempt) in live {
                if self
                    .apply(&id, |m, o| m.released(i, attempt, now, o))
                    .is_ok()
                {
                    requeued += 1;
                }
            }
        }
        tracing::warn!(tasks = requeued, "queued again after Redis lost its data");
    }
}
