//! A run's stream: the snapshot (or, with `since`, the stored events the client
//! missed), the text its running attempts streamed so far, then live frames.
//!
//! Joining comes first, so nothing published after the store is read is missed; what
//! the frames repeat is dropped by the client's [`Picker`] cursor.

use super::socket::{give_up, relay, resync, send, send_raw, send_text, Picker};
use super::{Closed, Revoked, View};
use crate::api::error::ApiError;
use crate::api::AppState;
use crate::api_types::LiveEvent;
use crate::live::{BusEvent, Feed, Frame, Snapshot, StoredPage, Subscription};
use crate::views;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// Stored events replayed per store read when catching up.
const REPLAY_PAGE: u32 = 5_000;
/// A run's full snapshot is reused by clients that join within this long of its
/// building; they replay what happened since from the store (a few events, where a
/// snapshot is every task).
const SNAPSHOT_REUSE: Duration = Duration::from_millis(500);

/// A run's subscriber before its connection is upgraded: joined to the stream, with the
/// run's summary as read after joining (which also proved the run exists).
pub(super) struct Joined {
    pub run_id: String,
    pub sub: Subscription,
    pub summary: Snapshot,
}

/// Joins run `run_id`'s stream and reads its summary, shared with every client joining
/// at the same time. `NotFound` when there is no such run.
pub(super) async fn join(
    state: &AppState,
    run_id: String,
    view: &View,
) -> Result<Joined, ApiError> {
    let feed = match view {
        View::Summary => Feed::Summaries,
        View::Tasks | View::Only(_) => Feed::Frames,
    };
    let sub = state.bus.join_run(&run_id, feed, |t| view.wants_text(t));
    let summary = sub.summary(|| summary_snapshot(state, &run_id)).await?;
    Ok(Joined {
        run_id,
        sub,
        summary,
    })
}

/// Why serving a run's stream stopped.
enum Stop {
    /// The connection ended (the client left, lagged, or was closed).
    Closed(Closed),
    /// The store could not be read: the client is told so, not just disconnected.
    Store(ApiError),
}

impl From<Closed> for Stop {
    fn from(why: Closed) -> Self {
        Stop::Closed(why)
    }
}

pub(super) async fn follow(
    state: AppState,
    mut socket: WebSocket,
    joined: Joined,
    since: Option<u64>,
    view: View,
    revoked: Revoked,
) -> Result<(), Closed> {
    match serve(&state, &mut socket, joined, since, view, revoked).await {
        Ok(()) => Ok(()),
        Err(Stop::Closed(why)) => Err(why),
        Err(Stop::Store(e)) => {
            tracing::warn!(error = %e, "a run's stream could not read the store");
            let why = "the server could not read this run's events; reconnect shortly";
            give_up(&mut socket, why).await;
            Err(why.into())
        }
    }
}

async fn serve(
    state: &AppState,
    socket: &mut WebSocket,
    joined: Joined,
    since: Option<u64>,
    view: View,
    revoked: Revoked,
) -> Result<(), Stop> {
    let Joined {
        run_id,
        sub,
        summary,
    } = joined;
    let known = summary.seq;
    let since = match since {
        Some(s) if s > known => {
            resync(
                socket,
                &format!("sequence {s} is beyond this run's last event {known}"),
            )
            .await?;
            None
        }
        other => other,
    };
    let cursor = match since {
        Some(since) => {
            if !matches!(view, View::Tasks) {
                // Counts may have moved without an event this view shows. Sent before
                // the replay, which is newer: a run's end it replays is not undone.
                if let Some(frame) = summary.run_only.clone() {
                    send_raw(socket, Message::Text(frame)).await?;
                }
            }
            replay(state, socket, &sub, &run_id, since, since, &view).await?
        }
        None => match &view {
            // Read after joining: the frames carry everything after it.
            View::Summary => {
                send_raw(socket, Message::Text(summary.bytes)).await?;
                summary.seq
            }
            View::Tasks | View::Only(_) => {
                let snap = match &view {
                    View::Only(ids) => tasks_snapshot(state, &run_id, ids).await,
                    _ => {
                        sub.snapshot(SNAPSHOT_REUSE, || full_snapshot(state, &run_id))
                            .await
                    }
                }
                .map_err(Stop::Store)?;
                send_raw(socket, Message::Text(snap.bytes)).await?;
                replay(state, socket, &sub, &run_id, snap.seq, snap.through, &view).await?
            }
        },
    };
    // The text so far; the frames carry the rest.
    if !sub.answers.is_empty() {
        send(socket, &json!({"type": "events", "events": sub.answers})).await?;
    }
    let only = match &view {
        View::Only(ids) => Some(Arc::clone(ids)),
        View::Tasks | View::Summary => None,
    };
    relay(
        socket,
        sub,
        Picker::new(cursor, only),
        state.shutdown.clone(),
        revoked,
    )
    .await?;
    Ok(())
}

/// Sends the stored events after `since` that `view` shows, coalesced; those up to
/// `through` in a single frame (they straddle a snapshot: see [`Snapshot::through`]).
/// Returns the last sequence number accounted for.
///
/// Served from the stream's recent events when they cover `since` (one frame, encoded
/// once for every joiner asking the same), else read from the store (the first page
/// read once for the joiners asking from the same cursor together).
async fn replay(
    state: &AppState,
    socket: &mut WebSocket,
    sub: &Subscription,
    run_id: &str,
    since: u64,
    through: u64,
    view: &View,
) -> Result<u64, Stop> {
    let detail = match view {
        View::Tasks => Some(0),
        View::Summary => Some(1),
        // A filter's replay is its own.
        View::Only(_) => None,
    };
    if let Some((frame, last)) = sub.recent(since, through, detail, |events| {
        render(events, view).map(Utf8Bytes::from)
    }) {
        metrics::counter!("apex_ws_replays_total", "from" => "memory").increment(1);
        if let Some(frame) = frame {
            send_raw(socket, Message::Text(frame)).await?;
        }
        return Ok(last);
    }
    metrics::counter!("apex_ws_replays_total", "from" => "store").increment(1);
    let run: Arc<str> = Arc::from(run_id);
    let mut page = sub
        .stored(since, through, || read_page(state, &run, since))
        .await?;
    let mut held: Vec<Arc<BusEvent>> = Vec::new();
    loop {
        held.extend(page.events.iter().cloned());
        if page.last >= through {
            send_frame(socket, std::mem::take(&mut held), view).await?;
        }
        if !page.full {
            break;
        }
        page = read_page(state, &run, page.last).await?;
    }
    send_frame(socket, held, view).await?;
    Ok(page.last)
}

/// The run's stored events after `since`, a page of them.
async fn read_page(state: &AppState, run: &Arc<str>, since: u64) -> Result<StoredPage, Stop> {
    let rows = state
        .store
        .events(run, since, None, REPLAY_PAGE)
        .await
        .map_err(|e| Stop::Store(e.into()))?;
    let events: Arc<[Arc<BusEvent>]> = rows
        .iter()
        .map(|r| {
            Arc::new(BusEvent::new(
                Some(Arc::clone(run)),
                Some(r.seq),
                None,
                LiveEvent::Stored(views::event_view(r)),
            ))
        })
        .collect();
    Ok(StoredPage {
        since,
        last: rows.last().map_or(since, |r| r.seq),
        full: rows.len() == REPLAY_PAGE as usize,
        events,
    })
}

async fn send_frame(
    socket: &mut WebSocket,
    events: Vec<Arc<BusEvent>>,
    view: &View,
) -> Result<(), Closed> {
    match render(events, view) {
        Some(text) => send_text(socket, text).await,
        None => Ok(()),
    }
}

/// One replay frame of `events` (in order, not yet coalesced): coalesced, accounting
/// for all of them, showing what `view` shows. `None` without events.
fn render(events: Vec<Arc<BusEvent>>, view: &View) -> Option<String> {
    if events.is_empty() {
        return None;
    }
    let all = Frame::build(events, None);
    let shown = all
        .events
        .iter()
        .filter(|e| view.shows(e))
        .cloned()
        .collect();
    Some(Frame::new(all.seq_from, all.seq_to, shown, None).encode())
}

/// The run's last stored sequence number now.
async fn last_seq(state: &AppState, run_id: &str) -> Result<u64, ApiError> {
    let run = state.store.get_run(run_id).await?;
    Ok(run.map_or(0, |r| r.last_seq))
}

fn snapshot(seq: u64, through: u64, body: Value) -> Snapshot {
    Snapshot {
        seq,
        through,
        bytes: Utf8Bytes::from(body.to_string()),
        run_only: None,
    }
}

/// A `snapshot` frame of the whole run, encoded straight from the typed document: by
/// way of a `Value` (as the smaller snapshots are), a 20,000-task run was first copied
/// into a tree of maps and strings, about as costly as reading it from the store.
#[derive(serde::Serialize)]
struct FullSnapshot<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    run: &'a crate::api_types::Run,
    seq: u64,
}

/// The run with its tasks (`detail=tasks`).
async fn full_snapshot(state: &AppState, run_id: &str) -> Result<Snapshot, ApiError> {
    let seq = last_seq(state, run_id).await?;
    let run = crate::api::runs::run_document(state, run_id).await?;
    let through = last_seq(state, run_id).await?;
    let frame = FullSnapshot {
        kind: "snapshot",
        run: &run,
        seq,
    };
    let text = serde_json::to_string(&frame)
        .map_err(|e| ApiError::Internal(format!("encoding the snapshot: {e}")))?;
    Ok(Snapshot {
        seq,
        through,
        bytes: Utf8Bytes::from(text),
        run_only: None,
    })
}

/// The run's summary only (`detail=summary`).
async fn summary_snapshot(state: &AppState, run_id: &str) -> Result<Snapshot, ApiError> {
    let row = state
        .store
        .get_run(run_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("run {run_id} not found")))?;
    let seq = row.last_seq;
    let run = views::run_summary(&row);
    // For clients resuming with `since`: counts may have moved without an event their
    // view shows.
    let run_only = json!({"type": "events", "run": run, "events": []});
    Ok(Snapshot {
        run_only: Some(Utf8Bytes::from(run_only.to_string())),
        // The followed-tasks shape with none followed: one documented snapshot of a summary.
        ..snapshot(
            seq,
            seq,
            json!({"type": "snapshot", "run": run, "tasks": [], "seq": seq}),
        )
    })
}

/// The run's summary and the tasks followed (`tasks=…`); ids the run does not have
/// (yet: a task may spawn them) are left out.
async fn tasks_snapshot(
    state: &AppState,
    run_id: &str,
    ids: &std::collections::HashSet<Box<str>>,
) -> Result<Snapshot, ApiError> {
    let row = state
        .store
        .get_run(run_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("run {run_id} not found")))?;
    let progress = state.engine.progress(run_id).await.unwrap_or_default();
    // One read for all of them: a dashboard asks for up to a thousand, and a read each
    // would queue every joiner on the store's few connections once per task.
    let ids: Vec<String> = ids.iter().map(|t| t.to_string()).collect();
    let mut found = state.store.get_tasks_by_id(run_id, &ids).await?;
    found.sort_unstable_by(|a, b| a.row.task_id.cmp(&b.row.task_id));
    let tasks: Vec<Value> = found
        .iter()
        .map(|t| {
            let p = progress
                .iter()
                .find(|(id, _, _)| *id == t.row.task_id)
                .map(|(_, p, m)| (*p, m.as_str()));
            views::task(t, &row.queue, p)
        })
        .collect();
    let through = last_seq(state, run_id).await?;
    let body = json!({"type": "snapshot", "run": views::run_summary(&row), "tasks": tasks, "seq": row.last_seq});
    Ok(snapshot(row.last_seq, through, body))
}
