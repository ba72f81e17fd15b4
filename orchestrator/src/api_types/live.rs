//! The text frames of `GET /api/v1/ws`. The bus builds them (`live/`); these types
//! describe their shapes for the document and for clients that read them.

use super::{Event, Queue, Run, RunSummary, Task, Worker};
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
        /// Stored Events (with `stored_at_ms`), or the live-only kinds (see
        /// [`LiveEvent`]).
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
    /// `tasks=ID,…`: the run's summary and the followed tasks it has; `detail=summary`:
    /// the summary and no tasks. First, so a reader tells it by its top-level `tasks`.
    Followed {
        run: Box<RunSummary>,
        tasks: Vec<Task>,
        seq: u64,
    },
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

/// One event of an `events` frame: its `kind` says which other fields it has. Stored
/// events (`task`, `run`, `log`) are [`Event`]s, which carry their own `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LiveEvent {
    /// A running attempt's progress report, or the text it streamed (`text_delta`).
    Progress(ProgressEvent),
    /// A run was submitted (fleet stream).
    RunCreated(RunEvent),
    /// A run's summary changed (fleet stream).
    RunUpdated(RunEvent),
    /// A worker's state changed (fleet stream).
    Worker(WorkerEvent),
    /// Some queue's stats changed: every queue's (fleet stream).
    Queues(QueuesEvent),
    /// A worker message nobody could read, as moved to the dead-letter stream (fleet
    /// stream).
    DeadLetter(DeadLetterEvent),
    /// The text an attempt streamed before this client joined (a run's stream, first).
    Answer(AnswerEvent),
    /// A stored event: `task`, `run` or `log`, as `GET /runs/{id}/events` shows it, with
    /// `stored_at_ms`. Last: serde tries the tagged kinds first.
    #[serde(untagged)]
    Stored(Event),
}

/// The fields of a `progress` event (live only, never stored; no `seq`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProgressEvent {
    pub run_id: String,
    pub task_id: String,
    pub attempt: u32,
    /// Fraction done in `[0, 1]`; null when the handler does not know.
    #[schema(required = true)]
    pub progress: Option<f64>,
    pub message: String,
    /// When the worker reported it (ms since the Unix epoch).
    pub at_ms: i64,
    /// Text generated since the attempt's last report (streamed LLM tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_delta: Option<String>,
    /// When the server received it (ms since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_at_ms: Option<i64>,
}

/// The fields of `run_created` and `run_updated`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunEvent {
    pub run: RunSummary,
    /// The bus sequence number (`since` on the fleet stream).
    pub seq: u64,
    /// When the server committed it (ms since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_at_ms: Option<i64>,
}

/// The fields of a `worker` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkerEvent {
    pub worker: Worker,
    /// The bus sequence number (`since` on the fleet stream).
    pub seq: u64,
    /// When the server committed it (ms since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_at_ms: Option<i64>,
}

/// The fields of a `queues` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueuesEvent {
    /// Every queue with work or workers.
    pub queues: Vec<Queue>,
    /// The bus sequence number (`since` on the fleet stream).
    pub seq: u64,
    /// When the server published it (ms since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_at_ms: Option<i64>,
}

/// The fields of a `dead_letter` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterEvent {
    /// The dead letter as stored in the dead-letter stream (any JSON value).
    pub letter: Value,
    /// When the server saw it (ms since the Unix epoch).
    pub at_ms: i64,
    /// The bus sequence number (`since` on the fleet stream).
    pub seq: u64,
    /// When the server published it (ms since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_at_ms: Option<i64>,
}

/// The fields of an `answer` event: what a running attempt streamed so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AnswerEvent {
    pub run_id: String,
    pub task_id: String,
    pub attempt: u32,
    /// The streamed text the server still keeps.
    pub text: String,
    /// Bytes streamed before `text` that the server no longer keeps.
    pub dropped_bytes: u64,
}

impl LiveEvent {
    /// Records when the event became durable (or was received, for live-only ones).
    /// Answers are built per client and keep none.
    pub fn stamp(&mut self, at_ms: i64) {
        let slot = match self {
            Self::Stored(e) => &mut e.stored_at_ms,
            Self::Progress(p) => &mut p.stored_at_ms,
            Self::RunCreated(r) | Self::RunUpdated(r) => &mut r.stored_at_ms,
            Self::Worker(w) => &mut w.stored_at_ms,
            Self::Queues(q) => &mut q.stored_at_ms,
            Self::DeadLetter(d) => &mut d.stored_at_ms,
            Self::Answer(_) => return,
        };
        *slot = Some(at_ms);
    }

    /// When the event became durable, if [`Self::stamp`] said.
    pub fn stored_at_ms(&self) -> Option<i64> {
        match self {
            Self::Stored(e) => e.stored_at_ms,
            Self::Progress(p) => p.stored_at_ms,
            Self::RunCreated(r) | Self::RunUpdated(r) => r.stored_at_ms,
            Self::Worker(w) => w.stored_at_ms,
            Self::Queues(q) => q.stored_at_ms,
            Self::DeadLetter(d) => d.stored_at_ms,
            Self::Answer(_) => None,
        }
    }

    /// Numbers a fleet event on the bus; the kinds of a run's stream have no `seq`.
    pub fn set_seq(&mut self, seq: u64) {
        match self {
            Self::RunCreated(r) | Self::RunUpdated(r) => r.seq = seq,
            Self::Worker(w) => w.seq = seq,
            Self::Queues(q) => q.seq = seq,
            Self::DeadLetter(d) => d.seq = seq,
            Self::Stored(_) | Self::Progress(_) | Self::Answer(_) => {}
        }
    }
}

/// Each variant's fields, with the `kind` that names it: `oneOf` the stored [`Event`]
/// and one `allOf` per live-only kind. Written out because the derive cannot describe a
/// tagged enum with an untagged variant.
impl utoipa::PartialSchema for LiveEvent {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, OneOfBuilder, Type};
        use utoipa::openapi::Ref;
        let tagged = |kind: &str, fields: &str| {
            AllOfBuilder::new()
                .item(
                    ObjectBuilder::new()
                        .property(
                            "kind",
                            ObjectBuilder::new()
                                .schema_type(Type::String)
                                .enum_values(Some([kind])),
                        )
                        .required("kind"),
                )
                .item(Ref::from_schema_name(fields))
        };
        OneOfBuilder::new()
            .description(Some(
                "One event of an `events` frame: its `kind` says which other fields it has.",
            ))
            .item(Ref::from_schema_name("Event"))
            .item(tagged("progress", "ProgressEvent"))
            .item(tagged("run_created", "RunEvent"))
            .item(tagged("run_updated", "RunEvent"))
            .item(tagged("worker", "WorkerEvent"))
            .item(tagged("queues", "QueuesEvent"))
            .item(tagged("dead_letter", "DeadLetterEvent"))
            .item(tagged("answer", "AnswerEvent"))
            .into()
    }
}

impl ToSchema for LiveEvent {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        fn add<T: ToSchema>(
            out: &mut Vec<(
                String,
                utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
            )>,
        ) {
            out.push((T::name().into_owned(), T::schema()));
            T::schemas(out);
        }
        add::<Event>(schemas);
        add::<ProgressEvent>(schemas);
        add::<RunEvent>(schemas);
        add::<WorkerEvent>(schemas);
        add::<QueuesEvent>(schemas);
        add::<DeadLetterEvent>(schemas);
        add::<AnswerEvent>(schemas);
    }
}
