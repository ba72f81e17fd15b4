//! DAG submissions: the JSON spec, its validation and the sealed graph the engine runs.
//!
//! `spec` → [`validate`] → [`Dag`]. Validation reports every problem at once; a `Dag`
//! exists only for a valid spec. No I/O, no async.

pub mod approval;
mod fan_out;
mod graph;
mod limits;
mod spec;
mod validate;

pub use fan_out::{grow, MAX_CHILDREN, MAX_SPAWN_DEPTH};
pub use graph::Dag;
pub use limits::Limits;
pub use spec::{
    AgentSpec, Budget, KeyLimit, OnExceeded, RunOptions, RunSpec, TaskSpec, Trigger,
    DEFAULT_RETRY_BACKOFF_S,
};
pub(crate) use validate::is_valid_id;
pub use validate::{
    json_size, validate, validate_agent, validate_submission, Problem, ProblemCode,
    ValidationErrors,
};

#[cfg(test)]
mod tests;
