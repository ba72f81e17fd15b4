//! `GET /api/v1/ws`: a snapshot, then events as they happen (docs/API.md).
//!
//! With `?run=ID` the client follows one run ([`run`]): its stored events carry the
//! run's sequence numbers, and `since` replays exactly what the client missed from the
//! store. `detail` chooses how much: `tasks` (every task event, coalesced per frame),
//! `summary` (counts, run state, failures, a few frames a second), or `tasks=ID,…`
//! (task-level for those tasks only). Without `run` it follows the fleet ([`fleet`]):
//! run summaries, workers, queues; `since` replays from the bus's ring.
//!
//! Frames are built once per stream by [`crate::live`] and shared; [`socket`] relays
//! them to one client, picking events out only where that client needs fewer. A client
//! never slows anyone else: one that falls too far behind is told to resync and
//! disconnected. At most `--max-websockets` connections are open at once ([`WsSlots`]);
//! more are refused with 503 before the upgrade.

mod fleet;
mod run;
mod socket;

use super::auth::{needs, Allowed};
use super::error::ApiError;
use super::AppState;
use axum::extract::{Query, State, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Most task ids one `tasks=` filter may name.
pub const MAX_FILTER_TASKS: usize = 1_000;

/// Bytes read from a client at a time.
const CLIENT_READ_BUFFER: usize = 4 << 10;
/// Largest message a client may send.
const CLIENT_MAX_MESSAGE: usize = 64 << 10;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/ws", get(subscribe))
}

/// The WebSocket connections open, against the operator's cap.
#[derive(Debug)]
pub struct WsSlots {
    /// Connections holding a [`WsSlot`]; an atomic, since every upgrade and every close
    /// touches it and nothing else needs to be consistent with it.
    open: AtomicUsize,
    max: usize,
}

/// One connection's claim on a slot, given back when dropped: when the connection ends,
/// however it ends (or when an upgrade is never completed).
#[derive(Debug)]
pub struct WsSlot(Arc<WsSlots>);

impl WsSlots {
    /// Room for `max` connections.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            open: AtomicUsize::new(0),
            max,
        })
    }

    /// A slot, or `None` when all are taken.
    pub fn take(self: &Arc<Self>) -> Option<WsSlot> {
        let taken = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()?;
        metrics::gauge!("apex_websockets_open").set((taken + 1) as f64);
        Some(WsSlot(Arc::clone(self)))
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

impl Drop for WsSlot {
    fn drop(&mut self) {
        let before = self.0.open.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!("apex_websockets_open").set(before.saturating_sub(1) as f64);
    }
}

/// What a run's subscriber wants.
#[derive(Debug, Clone)]
pub(super) enum View {
    /// Every task event, coalesced (`detail=tasks`, the default).
    Tasks,
    /// Counts, the run's state and its failures (`detail=summary`).
    Summary,
    /// Task-level for these tasks, the run's state and (a few times a second) counts
    /// (`tasks=ID1,ID2`).
    Only(Arc<HashSet<Box<str>>>),
}

impl View {
    /// Whether an event of the run's stream is for this subscriber.
    fn shows(&self, e: &crate::live::BusEvent) -> bool {
        match self {
            View::Tasks => true,
            View::Summary => e.summarised(),
            View::Only(ids) => {
                e.kind == crate::live::Kind::Run
                    || e.subject.as_deref().is_some_and(|t| ids.contains(t))
            }
        }
    }

    /// Whether this subscriber gets task `id`'s streamed text.
    fn wants_text(&self, id: &str) -> bool {
        match self {
            View::Tasks => true,
            View::Summary => false,
            View::Only(ids) => ids.contains(id),
        }
    }
}

/// The query of `GET /api/v1/ws`.
#[derive(Debug)]
struct Params {
    run: Option<String>,
    since: Option<u64>,
    view: View,
}

/// Why the query of `GET /api/v1/ws` is refused (400).
#[derive(Debug, thiserror::Error)]
enum BadQuery {
    #[error("since must be a sequence number, not {0:?}")]
    Since(String),
    #[error("detail must be `tasks` or `summary`, not {0:?}")]
    Detail(String),
    #[error("`detail` and `tasks` choose what a run's stream carries: add `run=ID`")]
    NoRun,
    #[error("`tasks` lists the tasks to follow in detail; it cannot go with detail=summary")]
    TasksWithSummary,
    #[error("`tasks` must name at least one task id")]
    NoTasks,
    #[error("`tasks` names {0} task ids; at most {MAX_FILTER_TASKS} may be followed at once")]
    TooManyTasks(usize),
}

impl From<BadQuery> for ApiError {
    fn from(e: BadQuery) -> Self {
        ApiError::BadRequest(e.to_string())
    }
}

impl Params {
    /// Reads the query; `tasks` may be repeated (`tasks=a,b&tasks=c`), since one
    /// parameter holds at most a kilobyte. Other parameters (`token`) are not ours.
    fn parse(pairs: Vec<(String, String)>) -> Result<Self, BadQuery> {
        let (mut run, mut since, mut detail, mut tasks) = (None, None, None, None::<Vec<Box<str>>>);
        for (k, v) in pairs {
            match k.as_str() {
                "run" => run = Some(v),
                "since" => since = Some(v.parse().map_err(|_| BadQuery::Since(v))?),
                "detail" => detail = Some(v),
                "tasks" => tasks
                    .get_or_insert_with(Vec::new)
                    .extend(v.split(',').filter(|t| !t.is_empty()).map(Box::from)),
                _ => {}
            }
        }
        if run.is_none() && (detail.is_some() || tasks.is_some()) {
            return Err(BadQuery::NoRun);
        }
        let view = match (detail.as_deref(), tasks) {
            (Some("summary"), Some(_)) => return Err(BadQuery::TasksWithSummary),
            (Some("summary"), None) => View::Summary,
            (Some("tasks") | None, None) => View::Tasks,
            (Some("tasks") | None, Some(ids)) => {
                let ids: HashSet<Box<str>> = ids.into_iter().collect();
                if ids.is_empty() {
                    return Err(BadQuery::NoTasks);
                }
                if ids.len() > MAX_FILTER_TASKS {
                    return Err(BadQuery::TooManyTasks(ids.len()));
                }
                View::Only(Arc::new(ids))
            }
            (Some(other), _) => return Err(BadQuery::Detail(other.to_owned())),
        };
        Ok(Self { run, since, view })
    }
}

/// Live events over a WebSocket.
///
/// A WebSocket (`Connection: Upgrade`, `Upgrade: websocket`); answers `101 Switching
/// Protocols`, then sends text frames, each one JSON object of schema `WsFrame`:
/// `snapshot` first (with `run`: the run and its event sequence; without: the newest
/// runs, the workers, the queues and the bus sequence), then `events` (one or more, in
/// order; bursts coalesced), and `resync` when the client fell behind or asked for a
/// `since` the server cannot serve. Browsers cannot set headers on a WebSocket, so the
/// token may be given as `?token=TOKEN`. At most `--max-websockets` connections are open
/// at once; over that the upgrade is refused with `503 unavailable`. Needs scope `read`.
#[utoipa::path(get, path = "/api/v1/ws", tag = "live", operation_id = "subscribe",
    params(
        ("run" = Option<String>, Query, description = "Follow one run (its stored events); without it, follow the fleet."),
        ("since" = Option<u64>, Query, description = "Resume after this sequence number (the run's with `run`, else the bus's)."),
        ("detail" = Option<String>, Query, description = "With `run`: `tasks` (every task event, the default) or `summary` (counts, run state, failures)."),
        ("tasks" = Option<String>, Query, description = "With `run`: task ids separated by commas, followed in detail (at most 1,000)."),
        ("token" = Option<String>, Query, description = "The API token, for clients that cannot send `Authorization`."),
    ),
    security(("bearerAuth" = []), ("tokenQuery" = [])),
    responses(
        (status = 101, description = "Switching Protocols: the connection is a WebSocket that carries `WsFrame` text frames.", body = crate::api_types::WsFrame),
        (status = 404, description = "`not_found`: no such run.", body = crate::api_types::ErrorResponse),
        (status = 426, description = "Not a WebSocket upgrade request."),
    ))]
pub(super) async fn subscribe(
    allowed: Allowed<needs::Read>,
    State(state): State<AppState>,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    // Subscribed now, before the upgrade, so no revocation after the check is missed.
    let revoked: Revoked = match &state.auth {
        Some(auth) => Box::pin(auth.revoked(Arc::clone(&allowed.principal.name))),
        None => Box::pin(std::future::pending()),
    };
    let Query(pairs) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let Params { run, since, view } = Params::parse(pairs)?;
    // Taken first, so a server at its cap refuses without touching the store.
    let slot = state
        .websockets
        .take()
        .ok_or(ApiError::WebSocketLimit(state.websockets.max))?;
    // Joined before the upgrade: the read that proves the run exists is the client's
    // first summary, shared with everyone connecting at the same time.
    let joined = match run {
        Some(run) => Some(run::join(&state, run, &view).await?),
        None => None,
    };
    // Clients only ever send pings and a close: a small read buffer (not the default
    // 128 KiB) keeps a thousand connections cheap, and a small message cap stops a
    // client from making the server buffer megabytes it will ignore.
    let ws = ws
        .read_buffer_size(CLIENT_READ_BUFFER)
        .max_message_size(CLIENT_MAX_MESSAGE)
        .max_frame_size(CLIENT_MAX_MESSAGE);
    Ok(ws.on_upgrade(move |socket| async move {
        let _slot = slot;
        let result = match joined {
            Some(joined) => run::follow(state, socket, joined, since, view, revoked).await,
            None => fleet::follow(state, socket, since, revoked).await,
        };
        if let Err(why) = result {
            tracing::debug!(%why, "websocket closed");
        }
    }))
}

/// Why a connection ended.
type Closed = String;

/// Resolves when the token the stream was opened with is revoked.
type Revoked = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

#[cfg(test)]
mod tests {
    use super::{BadQuery, Params, View, WsSlots};

    #[test]
    fn slots_run_out_at_the_cap_and_come_back_when_dropped() {
        let slots = WsSlots::new(2);
        let a = slots.take().expect("first");
        let b = slots.take().expect("second");
        assert!(slots.take().is_none(), "over the cap");
        assert_eq!(slots.open(), 2);
        drop(a);
        assert_eq!(slots.open(), 1);
        let c = slots.take().expect("a freed slot");
        drop((b, c));
        assert_eq!(slots.open(), 0);
        assert!(WsSlots::new(0).take().is_none());
    }

    fn parse(q: &str) -> Result<Params, BadQuery> {
        Params::parse(pairs(q))
    }

    fn pairs(q: &str) -> Vec<(String, String)> {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn the_query_chooses_the_detail_of_a_run_stream() {
        assert!(matches!(parse("run=r").unwrap().view, View::Tasks));
        assert!(matches!(
            parse("run=r&detail=summary").unwrap().view,
            View::Summary
        ));
        let p = parse("run=r&tasks=a,b&tasks=c&since=4&token=x").unwrap();
        assert_eq!(p.since, Some(4));
        match p.view {
            View::Only(ids) => assert_eq!(ids.len(), 3),
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse("detail=summary"), Err(BadQuery::NoRun)));
        assert!(matches!(
            parse("run=r&detail=all"),
            Err(BadQuery::Detail(_))
        ));
        assert!(matches!(
            parse("run=r&detail=summary&tasks=a"),
            Err(BadQuery::TasksWithSummary)
        ));
        assert!(matches!(parse("run=r&tasks=,"), Err(BadQuery::NoTasks)));
        assert!(matches!(parse("run=r&since=x"), Err(BadQuery::Since(_))));
        let many: Vec<String> = (0..=super::MAX_FILTER_TASKS)
            .map(|i| format!("t{i}"))
            .collect();
        assert!(matches!(
            parse(&format!("run=r&tasks={}", many.join(","))),
            Err(BadQuery::TooManyTasks(_))
        ));
    }
}
