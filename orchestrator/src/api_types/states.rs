//! Schemas of the scheduler's state enums: they live in `state_machine/`, which stays
//! free of API concerns, so their OpenAPI shape is declared here.

use crate::state_machine::{RunState, TaskState, ALL_TASK_STATES};
use std::borrow::Cow;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;

fn string_enum(values: Vec<&'static str>, description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values))
        .description(Some(description))
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
