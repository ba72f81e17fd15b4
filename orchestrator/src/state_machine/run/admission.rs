//! Admission: dispatching ready tasks while limits and budgets allow, and what each
//! attempt is charged against them.

use super::budget_ask::Scope;
use super::*;

impl RunMachine {
    /// Dispatches waiting tasks, best first, while the run's limits, its budget and
    /// `gate` allow. A task its own budget cannot cover fails; once the run's budget
    /// cannot cover the next task even with nothing else in flight, no more are
    /// dispatched: those left are skipped and the run fails once running ones finish.
    /// Tasks that need the same agent and concurrency key go in order: one the gate
    /// turns away (say, too many tokens for the minute) holds back the smaller ones
    /// behind it rather than being overtaken for ever.
    pub fn admit(&mut self, now_ms: i64, gate: &mut dyn Gate, out: &mut Output) {
        if self.state.is_terminal() {
            self.waiting.clear();
            return;
        }
        let max_parallel = self.dag.options.max_parallel.map(|m| m as usize);
        let run_budget = self.dag.options.budget;
        // Groups of tasks needing the same shared limits whose best task the gate
        // refused: the rest of the group would be refused too, so the group sits out
        // the rest of this pass. A pass costs O(admitted + groups), however many wait.
        let mut held = Vec::new();
        while let Some((key, group)) = self.waiting.first() {
            crate::dag::work::count(1);
            let i = key.1;

            if self.exhausted.is_some() || self.asking.is_some() || out.is_full() {
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
                    self.waiting.remove(key);
                    if b.asks() {
                        self.ask_budget(i, Scope::Task, why, now_ms, out);
                    } else {
                        self.over_budget(i, why, now_ms, out);
                    }
                    continue;
                }
            }
            if let Some(b) = &run_budget {
                if let Some(why) = shortfall(b, &self.spent, &est) {
                    if b.asks() {
                        self.waiting.remove(key);
                        self.ask_budget(i, Scope::Run, why, now_ms, out);
                        break;
                    }
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
                self.waiting.hold(group);
                held.push(group);
                continue;
            }
            self.waiting.remove(key);
            out.take_room();
            self.reserved.insert(i, est);
            let _ = self.set_state(i, Stimulus::Dispatched, out);
            self.dispatch(i, now_ms, out);
        }
        self.waiting.unhold_all(&held);
        if self.exhausted.is_some() {
            self.skip_unstarted(now_ms, out);
        }
    }

    /// Changes one attempt's charge of task `i` and carries it into the totals.
    pub(super) fn charge(
        &mut self,
        i: u32,
        out: &mut Output,
        f: impl FnOnce(&mut Charges) -> Change,
    ) {
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
    pub(super) fn settle(&mut self, i: u32, attempt: u32, unaccounted: bool, out: &mut Output) {
        let Some(reservation) = self.reserved.remove(&i) else {
            return;
        };
        if unaccounted {
            self.charge(i, out, |c| c.keep_reservation(attempt, &reservation));
        }
    }

    /// What the run has spent plus what its attempts in flight may still spend.
    pub(in crate::state_machine) fn committed(&self) -> Usage {
        let mut committed = self.spent;
        for (&i, r) in &self.reserved {
            let t = &self.tasks[i as usize];
            let charged = t.charges.of(t.attempt).map(|c| c.usage).unwrap_or_default();
            budget::add(&mut committed, &budget::outstanding(r, &charged));
        }
        committed
    }

    /// Task `i`'s own budget cannot cover another attempt: it fails without one.
    pub(super) fn over_budget(&mut self, i: u32, why: String, now_ms: i64, out: &mut Output) {
        let failure = TaskFailure {
            kind: BUDGET_EXCEEDED.into(),
            error_type: None,
            message: format!("budget exceeded: the task's {why}"),
            traceback: None,
        };
        let _ = self.set_state(i, Stimulus::OverBudget, out);
        let t = &mut self.tasks[i as usize];
        t.error = Some(Box::new(failure.clone()));
        t.finished_at_ms = Some(now_ms);
        self.record_task(i, now_ms, Some(failure), out);
        self.propagate(i, now_ms, out);
    }

    /// The run's budget is spent: every task waiting to be dispatched is skipped.
    pub(super) fn skip_unstarted(&mut self, now_ms: i64, out: &mut Output) {
        let waiting = self.waiting.take_all();
        let mut todo = Vec::new();
        for i in waiting {
            self.skip_for_budget(i, now_ms, out);
            self.release_children(i, now_ms, &mut todo);
        }
        self.resolve(todo, now_ms, out);
        self.complete_if_done(now_ms, out);
    }

    pub(super) fn skip_for_budget(&mut self, i: u32, now_ms: i64, out: &mut Output) {
        let failure = TaskFailure {
            kind: BUDGET_EXCEEDED.into(),
            error_type: None,
            message: self.exhausted.clone().unwrap_or_default(),
            traceback: None,
        };
        let _ = self.set_state(i, Stimulus::BudgetExhausted, out);
        let t = &mut self.tasks[i as usize];
        t.error = Some(Box::new(failure.clone()));
        t.finished_at_ms = Some(now_ms);
        self.record_task(i, now_ms, Some(failure), out);
    }

    /// What the next attempt of task `i` is expected to spend.
    pub(super) fn estimate(&self, i: u32) -> Usage {
        let upstream: usize = self
            .dag
            .parents(i)
            .iter()
            .filter_map(|&p| self.tasks[p as usize].output.as_ref())
            .map(crate::dag::json_size)
            .sum();
        estimate(&self.dag, i, upstream)
    }

    pub(super) fn waiting_key(&self, i: u32) -> (Reverse<i32>, u32) {
        (Reverse(self.dag.task(i).priority), i)
    }

    /// Task `i` waits for admission, with the tasks that need the same shared limits.
    pub(super) fn wait(&mut self, i: u32) {
        let spec = self.dag.task(i);
        let class = (spec.agent.as_deref(), spec.concurrency_key.as_deref());
        self.waiting.insert((Reverse(spec.priority), i), class);
    }

    /// Tokens and money the whole run used so far.
    pub fn usage(&self) -> Usage {
        self.spent
    }
}
