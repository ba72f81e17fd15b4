//! DAG submissions: the JSON spec, its validation and the sealed graph the engine runs.
//!
//! `spec` → [`validate`] → [`Dag`]. Validation reports every problem at once; a `Dag`
//! exists only for a valid spec. No I/O, no async.

mod graph;
mod limits;
mod spec;
mod validate;

pub use graph::Dag;
pub use limits::Limits;
pub use spec::{RunSpec, TaskSpec, Trigger, DEFAULT_RETRY_BACKOFF_S};
pub use validate::{json_size, validate, Problem, ProblemCode, ValidationErrors};

#[cfg(test)]
mod tests;
