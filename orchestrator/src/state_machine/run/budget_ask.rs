//! Budgets that ask: a task a budget with `"on_exceeded": "ask"` cannot cover waits for
//! a person instead of failing. A raise lets it be admitted again; a rejection ends it
//! as `"fail"` would have.
//!
//! Why the task waits is kept on it as its `error` (kind [`AWAITING_BUDGET`],
//! `error_type` the budget's scope), so it is stored with the task row and a restored
//! machine knows whether the run's dispatching is paused.

use super::*;
use crate::dag::Budget;

/// The error kind a task waiting for a budget raise carries, saying why it waits.
pub const AWAITING_BUDGET: &str = "awaiting_budget";

/// Which budget a task waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The task's own budget: the rest of the run goes on.
    Task,
    /// The run's budget: the run dispatches nothing more until a decision.
    Run,
}

impl Scope {
    fn as_str(self) -> &'static str {
        match self {
            Scope::Task => "task",
            Scope::Run => "run",
        }
    }
}

/// The budget a waiting task asks about, if it waits for one.
pub fn asks_for(t: &TaskRuntime) -> Option<Scope> {
    let e = t.error.as_ref().filter(|e| e.kind == AWAITING_BUDGET)?;
    match e.error_type.as_deref() {
        Some("run") => Some(Scope::Run),
        _ => Some(Scope::Task),
    }
}

impl RunMachine {
    /// Task `i` (ready, out of the admission queue) cannot be covered by a budget that
    /// asks: it waits, on no worker.
    pub(super) fn ask_budget(
        &mut self,
        i: u32,
        scope: Scope,
        why: String,
        now_ms: i64,
        out: &mut Output,
    ) {
        let _ = self.set_state(i, Stimulus::AskBudget, out);
        let reason = TaskFailure {
            kind: AWAITING_BUDGET.into(),
            error_type: Some(scope.as_str().into()),
            message: format!("waiting for a budget raise: the {}'s {why}", scope.as_str()),
            traceback: None,
        };
        let t = &mut self.tasks[i as usize];
        t.error = Some(Box::new(reason.clone()));
        if scope == Scope::Run {
            self.asking = Some(i);
        }
        self.record_task(i, now_ms, Some(reason), out);
    }

    /// Which budget waiting task `i` asks about, or why a raise does not apply to it.
    fn asking_scope(&self, i: u32) -> Result<Scope, Rejected> {
        let t = self.tasks.get(i as usize).ok_or(Rejected::UnknownTask)?;
        if self.state.is_terminal() {
            return Err(Rejected::RunFinished(self.state));
        }
        if t.state != TaskState::Waiting {
            return Err(Rejected::NotWaiting(t.state));
        }
        asks_for(t).ok_or_else(|| {
            Rejected::BadDecision(
                "the task waits for an approval, not a budget: \"raise\" does not apply".into(),
            )
        })
    }

    /// True when waiting task `i` waits for a budget raise.
    pub fn asks_budget(&self, i: u32) -> bool {
        self.tasks
            .get(i as usize)
            .is_some_and(|t| t.state == TaskState::Waiting && asks_for(t).is_some())
    }

    /// A person raised the budget waiting task `i` asks about to `raise` (its fields
    /// replace the budget's; each must be above the current limit, which must exist).
    /// The task is admitted again, so a raise that still does not cover it makes it
    /// wait again.
    pub fn raise_budget(
        &mut self,
        i: u32,
        raise: &Budget,
        now_ms: i64,
        out: &mut Output,
    ) -> Result<(), Rejected> {
        let scope = self.asking_scope(i)?;
        let current = match scope {
            Scope::Task => self.dag.task(i).budget,
            Scope::Run => self.dag.options.budget,
        }
        .unwrap_or_default();
        let raised = raised(&current, raise).map_err(Rejected::BadDecision)?;
        let dag = Arc::make_mut(&mut self.dag);
        match scope {
            Scope::Task => {
                dag.set_task_budget(i, raised);
                out.respecced.push(i);
            }
            Scope::Run => {
                dag.set_run_budget(raised);
                out.options_changed = true;
                self.asking = None;
            }
        }
        self.set_state(i, Stimulus::BudgetRaised, out)?;
        self.tasks[i as usize].error = None;
        self.record_task(i, now_ms, None, out);
        self.wait(i);
        Ok(())
    }

    /// A person rejected the raise waiting task `i` asks for: it ends as the budget's
    /// `fail` would have ended it (its own budget: it fails; the run's: it and every
    /// task not yet dispatched are skipped, and the run fails).
    pub(super) fn reject_raise(
        &mut self,
        i: u32,
        message: String,
        now_ms: i64,
        out: &mut Output,
    ) -> Result<(), Rejected> {
        let scope = self.asking_scope(i)?;
        let why = self.tasks[i as usize]
            .error
            .as_ref()
            .map(|e| e.message.clone())
            .unwrap_or_default();
        let why = why
            .strip_prefix("waiting for a budget raise: ")
            .unwrap_or(&why);
        match scope {
            Scope::Task => {
                self.set_state(i, Stimulus::Declined, out)?;
                let failure = TaskFailure {
                    kind: BUDGET_EXCEEDED.into(),
                    error_type: None,
                    message: format!("budget exceeded: {why}; the raise was {message}"),
                    traceback: None,
                };
                let t = &mut self.tasks[i as usize];
                t.error = Some(Box::new(failure.clone()));
                t.finished_at_ms = Some(now_ms);
                self.record_task(i, now_ms, Some(failure), out);
                self.propagate(i, now_ms, out);
            }
            Scope::Run => {
                let id = &self.dag.task(i).id;
                self.exhausted = Some(format!(
                    "budget exceeded: {why} (for task {id:?}); the raise was {message}; no more tasks are dispatched"
                ));
                self.asking = None;
                self.skip_for_budget(i, now_ms, out);
                let mut todo = Vec::new();
                self.release_children(i, now_ms, &mut todo);
                self.resolve(todo, now_ms, out);
                self.skip_unstarted(now_ms, out);
            }
        }
        Ok(())
    }

    /// Forgets that task `i` paused the run (it was cancelled).
    pub(super) fn stop_asking(&mut self, i: u32) {
        if self.asking == Some(i) {
            self.asking = None;
        }
    }
}

/// `current` with `raise`'s limits put in, or why the raise is not one.
fn raised(current: &Budget, raise: &Budget) -> Result<Budget, String> {
    if raise.max_tokens.is_none() && raise.max_cost_usd.is_none() {
        return Err("\"raise\" sets neither max_tokens nor max_cost_usd".into());
    }
    if raise.on_exceeded.is_some() {
        return Err("\"raise\" takes max_tokens and max_cost_usd only".into());
    }
    let mut b = *current;
    if let Some(new) = raise.max_tokens {
        match current.max_tokens {
            None => return Err("the budget sets no max_tokens: there is nothing to raise".into()),
            Some(old) if new <= old => {
                return Err(format!(
                    "max_tokens {new} does not raise the limit of {old}"
                ))
            }
            _ => b.max_tokens = Some(new),
        }
    }
    if let Some(new) = raise.max_cost_usd {
        if !new.is_finite() {
            return Err("max_cost_usd must be a finite number".into());
        }
        match current.max_cost_usd {
            None => return Err("the budget sets no max_cost_usd: there is nothing to raise".into()),
            Some(old) if new <= old => {
                return Err(format!(
                    "max_cost_usd {new} does not raise the limit of {old}"
                ))
            }
            _ => b.max_cost_usd = Some(new),
        }
    }
    Ok(b)
}
