//! Where a run came from, stored with its options: the template it was made from, the
//! schedule tick or webhook that started it, and the idempotency key it was submitted
//! under. Stored in the same row, in the same transaction, as the run itself, so a run
//! and the fact that a tick fired (or a key was used) cannot be written apart.

use serde::{Deserialize, Serialize};

/// The origin of a run; every part optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunOrigin {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateRef>,
    /// The schedule that started the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// The schedule tick (ms since the epoch) the run is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tick_ms: Option<i64>,
    /// The webhook that started the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook: Option<String>,
    /// SHA-256 (hex) of the token name and the idempotency key: never the key itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency: Option<String>,
    /// SHA-256 (hex) of the request the key was first used with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_sha256: Option<String>,
}

/// A template and the version a run was made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TemplateRef {
    pub name: String,
    pub version: u32,
}
