//! A run's stream: the snapshot (or, with `since`, the stored events the client
//! missed), the text its running attempts streamed so far, then live frames.
//!
//! Joining comes first, so nothing published after the store is read is missed; what
//! the frames repeat is dropped by the client's [`Picker`] cursor.

use super::socket::{relay, resync, send, send_raw, send_text, Picker};
use super::{Closed, Revoked, View};
use crate::api::error::ApiError;
use crate::api::AppState;
use crate::live::{BusEvent, Feed, Frame, Snapshot};
use crate::views;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Stored events replayed per store read when catching up.
const REPLAY_PAGE: u32 = 5_000;
/// A run's full snapshot is reused by clients that join within this long of its
/// building; they replay what happened since from the store (a few events, where a
/// snapshot is every task).
const SNAPSHOT_REUSE: Duration = Duration::from_millis(500);

pub(super) async fn follow(
    state: AppState,
    mut socket: WebSocket,
    run_id: String,
    since: Option<u64>,
    view: View,
    revoked: Revoked,
) -> Result<(), Closed> {
    let feed = match view {
        View::Summary => Feed::Summaries,
        View::Tasks | View::Only(_) => Feed::Frames,
    };
    let sub = state.bus.join_run(&run_id, feed, |t| view.wants_text(t));
    let known = state
        .store
        .get_run(&run_id)
        .await
        .map_err(|e| e.to_string())?
        .map_or(0, |r| r.last_seq);
    let since = match since {
        Some(s) if s > known => {
            resync(
                &mut socket,
                &format!("sequence {s} is beyond this run's last event {known}"),
            )
            .await?;
            None
        }
        other => other,
    };
    let socket = &mut socket;
    let cursor = match since {
        Some(since) => {
            let last = replay(&state, socket, &run_id, since, since, &view).await?;
            if !matches!(view, View::Tasks) {
                // Counts may have moved without an event this view shows.
                send_current_summary(&state, socket, &run_id).await?;
            }
            last
        }
        None => {
            let snap = match &view {
                View::Tasks => {
                    sub.snapshot(SNAPSHOT_REUSE, || full_snapshot(&state, &run_id))
                        .await
                }
                View::Summary => summary_snapshot(&state, &run_id).await,
                View::Only(ids) => tasks_snapshot(&state, &run_id, ids).await,
            }
            .map_err(|e| e.to_string())?;
            send_raw(socket, Message::Text(snap.bytes)).await?;
            replay(&state, socket, &run_id, snap.seq, snap.through, &view).await?
        }
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
    .await
}

/// Sends the stored events after `since` that `view` shows, coalesced; those up to
/// `through` in a single frame (they straddle a snapshot: see [`Snapshot::through`]).
/// Returns the last sequence number accounted for.
async fn replay(
    state: &AppState,
    socket: &mut WebSocket,
    run_id: &str,
    since: u64,
    through: u64,
    view: &View,
) -> Result<u64, Closed> {
    let run: Arc<str> = Arc::from(run_id);
    let mut last = since;
    let mut held: Vec<Arc<BusEvent>> = Vec::new();
    loop {
        let rows = state
            .store
            .events(run_id, last, None, REPLAY_PAGE)
            .await
            .map_err(|e| e.to_string())?;
        let Some(tail) = rows.last() else { break };
        last = tail.seq;
        let full = rows.len() as u32 == REPLAY_PAGE;
        held.extend(rows.iter().map(|r| {
            Arc::new(BusEvent::new(
                Some(Arc::clone(&run)),
                Some(r.seq),
                None,
                views::event(r),
            ))
        }));
        if last >= through {
            send_frame(socket, std::mem::take(&mut held), view).await?;
        }
        if !full {
            break;
        }
    }
    send_frame(socket, held, view).await?;
    Ok(last)
}

async fn send_frame(
    socket: &mut WebSocket,
    events: Vec<Arc<BusEvent>>,
    view: &View,
) -> Result<(), Closed> {
    if events.is_empty() {
        return Ok(());
    }
    let all = Frame::build(events, None);
    let shown = all
        .events
        .iter()
        .filter(|e| view.shows(e))
        .cloned()
        .collect();
    send_text(
        socket,
        Frame::new(all.seq_from, all.seq_to, shown, None).encode(),
    )
    .await
}

/// A frame carrying only the run's current summary.
async fn send_current_summary(
    state: &AppState,
    socket: &mut WebSocket,
    run_id: &str,
) -> Result<(), Closed> {
    let row = state
        .store
        .get_run(run_id)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(row) = row {
        let run = views::run_summary(&row);
        send(socket, &json!({"type": "events", "run": run, "events": []})).await?;
    }
    Ok(())
}

/// The run's last stored sequence number now.
async fn last_seq(state: &AppState, run_id: &str) -> Result<u64, ApiError> {
    let run = state.store.get_run(run_id).await?;
    Ok(run.map_or(0, |r| r.last_seq))
}

fn snapshot(seq: u64, through: u64, body: Value) -> Snapshot {
    Snapshot {
        built: Instant::now(),
        seq,
        through,
        bytes: Utf8Bytes::from(body.to_string()),
    }
}

/// The run with its tasks (`detail=tasks`).
async fn full_snapshot(state: &AppState, run_id: &str) -> Result<Snapshot, ApiError> {
    let seq = last_seq(state, run_id).await?;
    let run = crate::api::runs::run_document(state, run_id).await?;
    let through = last_seq(state, run_id).await?;
    Ok(snapshot(
        seq,
        through,
        json!({"type": "snapshot", "run": run, "seq": seq}),
    ))
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
    Ok(snapshot(
        seq,
        seq,
        json!({"type": "snapshot", "run": run, "seq": seq}),
    ))
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
    let mut ids: Vec<&str> = ids.iter().map(|t| &**t).collect();
    ids.sort_unstable();
    let mut tasks = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(t) = state.store.get_task(run_id, id).await? {
            let p = progress
                .iter()
                .find(|(t, _, _)| t == id)
                .map(|(_, p, m)| (*p, m.as_str()));
            tasks.push(views::task(&t, &row.queue, p));
        }
    }
    let through = last_seq(state, run_id).await?;
    let body = json!({"type": "snapshot", "run": views::run_summary(&row), "tasks": tasks, "seq": row.last_seq});
    Ok(snapshot(row.last_seq, through, body))
}
