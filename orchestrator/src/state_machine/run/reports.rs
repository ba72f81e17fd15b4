//! What workers report about attempts: started, succeeded, failed, released, lost,
//! logs and usage.

use super::*;

impl RunMachine {
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
        t.error = Some(Box::new(failure.failure.clone()));
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
            self.wait(i);
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
        t.error = Some(Box::new(failure.clone()));
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
    pub(super) fn charge_report(
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
}
