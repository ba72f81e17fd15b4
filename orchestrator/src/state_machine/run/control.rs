//! Whole-run controls: cancel, rerun, and growing the graph with spawned children.

use super::*;

impl RunMachine {
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
            t.error = Some(Box::new(TaskFailure {
                kind: "cancelled".into(),
                error_type: None,
                message: "the run was cancelled".into(),
                traceback: None,
            }));
            self.record_task(i, now_ms, None, out);
        }
        self.waiting.clear();
        self.deferred.clear();
        self.reserved.clear();
        self.asking = None;
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
    pub(super) fn spawn(
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
}
