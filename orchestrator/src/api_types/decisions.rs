//! The bodies of a person's decisions about a waiting task (`approve`, `reject`): the
//! server reads them, `apex approve` and `apex reject` write them.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// The body of an approval: all of it optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveRequest {
    /// Kept with the decision and shown with the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Any JSON, handed to the dependents as part of the task's output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// For a task waiting on a budget (`"on_exceeded": "ask"`): the new limits of the
    /// budget it waits on, each above the current one. Required for such a task, refused
    /// for an approval task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raise: Option<BudgetRaise>,
}

/// New limits for the budget a waiting task asks about.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetRaise {
    /// Tokens (input + output) the budget may count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// US dollars the budget may count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost_usd: Option<f64>,
}

/// The body of a rejection: all of it optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectRequest {
    /// Kept with the decision, in the task's error message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}
