//! The task lifecycle as pure code: one table of legal transitions ([`transition`]) and a
//! per-run machine ([`RunMachine`]) that takes stimuli (a result arrived, a backoff passed,
//! the run was cancelled) and returns commands (dispatch, schedule a retry, cancel an
//! attempt) plus the numbered events to store and publish. No I/O, no async, no clock.

pub mod budget;
mod run;

mod states;

pub use run::{
    AttemptFailure, AttemptSuccess, Command, Event, EventKind, Gate, Open, Output, Rejected,
    RunMachine, TaskFailure, TaskRuntime, Usage, AWAITING_BUDGET, BUDGET_EXCEEDED,
    MAX_LOST_ATTEMPTS,
};
pub use states::{
    transition, IllegalTransition, RunState, Stimulus, TaskState, ALL_TASK_STATES, TASK_STATE_COUNT,
};

#[cfg(test)]
mod admission_tests;
#[cfg(test)]
mod approval_tests;
#[cfg(test)]
mod budget_ask_tests;
#[cfg(test)]
mod slice_tests;
#[cfg(test)]
mod tests;
