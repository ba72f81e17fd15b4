//! The agent registry, API tokens and the audit log (`/api/v1/agents`, `/tokens`,
//! `/audit`).

use super::{Price, Scope};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// A registered agent: its spec with every field, its name and times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Agent {
    pub name: String,
    pub provider: String,
    pub model: String,
    #[schema(required = true)]
    pub system_prompt: Option<String>,
    #[schema(required = true)]
    pub temperature: Option<f64>,
    #[schema(required = true)]
    pub max_output_tokens: Option<u32>,
    #[schema(required = true)]
    pub max_concurrency: Option<u32>,
    #[schema(required = true)]
    pub price: Option<Price>,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// Milliseconds since the Unix epoch.
    pub updated_at_ms: i64,
}

/// Every registered agent, by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentList {
    pub agents: Vec<Agent>,
}

/// The body of `POST /api/v1/tokens`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// 1–64 characters of `A-Za-z0-9_-.`; not `admin` or `anonymous`.
    #[schema(pattern = r"^[A-Za-z0-9_.-]{1,64}$")]
    pub name: String,
    pub scope: Scope,
}

/// An API token as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Token {
    pub name: String,
    pub scope: Scope,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// The token that created it.
    pub created_by: String,
    /// About when it was last presented (to within a minute or so); null if never.
    #[schema(required = true)]
    pub last_used_at_ms: Option<i64>,
}

/// A token just created: the one answer that carries its secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub token: Token,
    /// The secret (`apex_…`): shown once, stored only as its SHA-256.
    #[serde(rename = "token")]
    pub secret: String,
}

/// Every API token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<Token>,
}

/// A change to the agent registry or the API tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// Increasing with each record; `before` of the next page.
    pub id: i64,
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The token that made the change.
    pub by: String,
    /// `agent.put`, `agent.delete`, `token.create` or `token.revoke`.
    pub action: String,
    /// The agent's or token's name.
    pub target: String,
    /// What else is worth knowing (a new token's scope; whether a put created the agent).
    #[schema(required = true)]
    pub detail: Option<Value>,
}

/// A page of the audit log, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditList {
    pub entries: Vec<AuditEntry>,
    /// The `before` of the next page; null on the last.
    #[schema(required = true)]
    pub next: Option<i64>,
}
