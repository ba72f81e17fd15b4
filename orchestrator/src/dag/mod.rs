//! DAG submissions: the JSON spec, its validation and the sealed graph the engine runs.
//!
//! `spec` → [`validate`] → [`Dag`]. Validation reports every problem at once; a `Dag`
//! exists only for a valid spec. No I/O, no async.

pub mod approval;
mod cycles;
mod fan_out;
mod graph;
mod limits;
pub mod origin;
mod spec;
mod validate;

pub use fan_out::{grow, MAX_CHILDREN, MAX_SPAWN_DEPTH};
pub use graph::Dag;
pub use limits::Limits;
pub use spec::{
    AgentSpec, Budget, KeyLimit, OnExceeded, RerunOf, RunOptions, RunSpec, TaskSpec, Trigger,
    DEFAULT_RETRY_BACKOFF_S,
};
pub(crate) use validate::is_valid_id;
pub use validate::{
    json_size, validate, validate_agent, validate_submission, Problem, ProblemCode,
    ValidationErrors,
};

#[cfg(test)]
mod tests;

/// A count of the work graph operations do (tasks checked, adjacency entries written),
/// so tests can show a cost is proportional to what changed. Counts only in tests.
pub(crate) mod work {
    #[cfg(test)]
    thread_local! {
        static DONE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// Adds `n` units of work.
    #[inline]
    pub(crate) fn count(n: usize) {
        #[cfg(test)]
        DONE.with(|d| d.set(d.get() + n));
        #[cfg(not(test))]
        let _ = n;
    }

    /// Units of work counted on this thread so far.
    #[cfg(test)]
    pub(crate) fn done() -> usize {
        DONE.with(std::cell::Cell::get)
    }
}
