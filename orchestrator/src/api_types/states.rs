//! Schemas of the scheduler's state enums: they live in `state_machine/`, which stays
//! free of API concerns, so their OpenAPI shape is declared here. So are the few
//! string fields whose values are a closed set the server writes (a worker's state, an
//! event's kind, what a task waits for): documented as enums, clients can switch on
//! them without copying the list from prose.

use crate::state_machine::{RunState, TaskState, ALL_TASK_STATES};
use std::borrow::Cow;
use utoipa::openapi::schema::{
    KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::RefOr;

fn string_enum(values: Vec<&'static str>, description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values))
        .description(Some(description))
        .into()
}

/// `RunSummary.counts`: a count for every task state, each always present
/// (`store::counts_map` writes them all).
pub(super) fn task_counts_schema() -> RefOr<Schema> {
    let count = || {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32)))
            .minimum(Some(0))
    };
    ALL_TASK_STATES
        .iter()
        .fold(
            ObjectBuilder::new().description(Some("Tasks per state (every state is present).")),
            |object, state| {
                object
                    .property(state.as_str(), count())
                    .required(state.as_str())
            },
        )
        .into()
}

/// `Worker.state`: what `engine::fleet::WorkerState::as_str` writes.
pub(super) fn worker_state_schema() -> RefOr<Schema> {
    string_enum(
        vec!["running", "draining", "stopped", "lost"],
        "`running`, `draining`, `stopped` or `lost`.",
    )
}

/// `Event.kind`: one per `state_machine::run::EventKind` variant.
pub(super) fn event_kind_schema() -> RefOr<Schema> {
    string_enum(vec!["task", "run", "log"], "`task`, `run` or `log`.")
}

/// `Task.waiting_for`: what `views::waiting_for` answers, null when not waiting.
pub(super) fn waiting_for_schema() -> RefOr<Schema> {
    OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .item(string_enum(vec!["approval", "budget"], "A person's decision, or a budget raise."))
        .description(Some(
            "What a `waiting` task waits for: `approval` (a decision) or `budget` (a raise); null when it is not waiting.",
        ))
        .into()
}

impl utoipa::PartialSchema for TaskState {
    fn schema() -> RefOr<Schema> {
        string_enum(
            ALL_TASK_STATES.iter().map(|s| s.as_str()).collect(),
            "Where a task is: `pending` (waiting on dependencies), `ready` (waiting for a retry backoff, a limit or a budget), `queued`, `running`, then one of `succeeded`, `failed`, `cancelled`, `skipped` (an upstream task did not succeed).",
        )
    }
}

impl utoipa::ToSchema for TaskState {
    fn name() -> Cow<'static, str> {
        "TaskState".into()
    }
}

impl utoipa::PartialSchema for RunState {
    fn schema() -> RefOr<Schema> {
        string_enum(
            [
                RunState::Running,
                RunState::Succeeded,
                RunState::Failed,
                RunState::Cancelled,
            ]
            .iter()
            .map(|s| s.as_str())
            .collect(),
            "A run is `running` until every task is finished, then `succeeded` (all did), `failed` or `cancelled`.",
        )
    }
}

impl utoipa::ToSchema for RunState {
    fn name() -> Cow<'static, str> {
        "RunState".into()
    }
}
