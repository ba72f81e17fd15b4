//! The body of every 4xx/5xx answer from the API.

use super::{Problem, Scope};
pub use crate::api::error::ErrorCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The body of every 4xx/5xx answer from the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorResponse {
    pub error: ErrorBody,
}

/// What went wrong: a stable `code`, a `message` for people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub code: ErrorCode,
    /// For people; not stable.
    pub message: String,
    /// Present for `invalid_dag` and `invalid_agent` only: every problem found, at once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<Problem>,
    /// `forbidden` only: the scope the request needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_scope: Option<Scope>,
    /// `idempotency_conflict` only: the run the key was first used for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}
