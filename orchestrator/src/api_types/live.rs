//! The text frames of `GET /api/v1/ws`. The bus builds them (`live/`); these types
//! describe their shapes for the document and for clients that read them.

use super::{Queue, Run, RunSummary, Worker};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// A text frame of `GET /api/v1/ws`, told apart by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WsFrame {
    /// The first frame (unless `since` could be served from what the server keeps).
    Snapshot(WsSnapshot),
    /// One or more events, in order.
    Events {
        /// The stored events this frame accounts for (run seqs on a run's stream, bus
        /// seqs on the fleet's): each is in `events` or was superseded by a later one of
        /// its task that is. Resuming with `since=seq_to` is exact. Absent on frames of
        /// live-only events.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq_from: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq_to: Option<u64>,
        /// A run's stream: the run's latest summary, when it changed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run: Option<Box<RunSummary>>,
        /// Stored Events (with `stored_at_ms`), or the live-only kinds: `progress`
        /// (`run_id`, `task_id`, `attempt`, `progress`, `message`, `at_ms`; no `seq`),
        /// `run_created` and `run_updated` (`run`: RunSummary, `seq`), `worker`
        /// (`worker`: Worker), `queues` (`queues`: [Queue]), `answer` (`task_id`,
        /// `attempt`, `text`, `dropped_bytes`: streamed text sent before this client
        /// joined).
        events: Vec<LiveEvent>,
    },
    /// The client fell behind (it is then disconnected), or asked for a `since` the
    /// server no longer has: reconnect without `since`, or refetch.
    Resync { reason: String },
}

/// The snapshot of a run (with `run`) or of the fleet (without).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum WsSnapshot {
    /// The run with its tasks and its last event's sequence number.
    Run { run: Box<Run>, seq: u64 },
    /// The newest runs, the workers, the queues and the bus sequence.
    Fleet {
        runs: Vec<RunSummary>,
        workers: Vec<Worker>,
        queues: Vec<Queue>,
        seq: u64,
    },
}

/// One event of an `events` frame: its `kind` says which other fields it has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LiveEvent {
    /// `task`, `run`, `log`, `progress`, `run_created`, `run_updated`, `worker`, `queues`.
    pub kind: String,
    /// The fields of that kind.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub fields: serde_json::Map<String, Value>,
}
