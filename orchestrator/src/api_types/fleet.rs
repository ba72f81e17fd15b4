//! Workers, queues and health (`/api/v1/workers`, `/queues`, `/health`, `/readyz`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A worker process as last heard from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Worker {
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub queues: Vec<String>,
    /// Attempts it runs at once.
    pub concurrency: u32,
    /// Attempts running now.
    pub in_flight: u32,
    #[serde(default)]
    #[schema(required = true)]
    pub handlers: Vec<String>,
    pub version: String,
    /// `running`, `draining`, `stopped` or `lost`.
    #[schema(schema_with = super::states::worker_state_schema)]
    pub state: String,
    /// Milliseconds since the Unix epoch.
    pub started_at_ms: i64,
    /// Milliseconds since the Unix epoch.
    pub last_heartbeat_ms: i64,
    pub heartbeat_interval_s: f64,
}

/// Every worker the server knows of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkerList {
    pub workers: Vec<Worker>,
}

/// Work and workers of one queue. `depth` counts tasks queued and not yet taken (or
/// waiting out a retry backoff in `ready`, or held back until their run's backlog in the
/// queue has room); `running` counts attempts in flight; `workers_desired` is the
/// autoscaling policy's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Queue {
    pub name: String,
    pub depth: u64,
    pub running: u64,
    pub workers_active: u64,
    pub workers_desired: u64,
}

impl From<&crate::engine::QueueStats> for Queue {
    fn from(q: &crate::engine::QueueStats) -> Self {
        Queue {
            name: q.name.clone(),
            depth: q.depth,
            running: q.running,
            workers_active: q.workers_active,
            workers_desired: q.workers_desired,
        }
    }
}

/// Every queue with work or workers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueueList {
    pub queues: Vec<Queue>,
}

/// A round trip to a dependency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Probe {
    pub ok: bool,
    pub latency_ms: f64,
    #[schema(required = true)]
    pub error: Option<String>,
}

/// Workers per state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkerCounts {
    pub running: u32,
    pub draining: u32,
    pub lost: u32,
    pub stopped: u32,
}

/// Health for people and dashboards: `status` is `ok` or `degraded`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`, or `degraded` when the store or Redis does not answer.
    pub status: String,
    pub store: Probe,
    pub redis: Probe,
    pub workers: WorkerCounts,
    pub queues: Vec<Queue>,
}

/// Whether this instance can serve: each part is `ok` or what is wrong.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    pub store: String,
    pub redis: String,
    /// `ok`, or which writes have been failing since when.
    pub writer: String,
}
