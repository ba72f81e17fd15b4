//! The fleet's stream: run summaries, workers and queues, not every task of every run.
//! `since` (a bus sequence number) replays from the bus's ring while it still holds
//! everything after it; otherwise the client gets `resync` and a fresh snapshot.

use super::socket::{relay, resync, send, send_text, Picker};
use super::{Closed, Revoked};
use crate::api::error::ApiError;
use crate::api::AppState;
use crate::live::Frame;
use crate::store::RunQuery;
use crate::views;
use axum::extract::ws::WebSocket;
use serde_json::{json, Value};

pub(super) async fn follow(
    state: AppState,
    mut socket: WebSocket,
    since: Option<u64>,
    revoked: Revoked,
) -> Result<(), Closed> {
    let (sub, replay) = state.bus.join_fleet(since);
    let cursor = match (replay, since) {
        (Some(events), Some(since)) => {
            let last = events.last().and_then(|e| e.seq).unwrap_or(since);
            if !events.is_empty() {
                send_text(&mut socket, Frame::build(events, None).encode()).await?;
            }
            last
        }
        (_, since) => {
            if since.is_some() {
                resync(&mut socket, "events after that sequence are no longer kept").await?;
            }
            let snapshot = snapshot(&state).await.map_err(|e| e.to_string())?;
            send(&mut socket, &snapshot).await?;
            snapshot["seq"].as_u64().unwrap_or(0)
        }
    };
    relay(
        &mut socket,
        sub,
        Picker::new(cursor, None),
        state.shutdown.clone(),
        revoked,
    )
    .await
}

async fn snapshot(state: &AppState) -> Result<Value, ApiError> {
    // Read first: whatever is published while the store is read comes again in frames.
    let seq = state.bus.last_seq();
    let runs = state
        .store
        .list_runs(&RunQuery {
            limit: 100,
            ..Default::default()
        })
        .await?;
    let workers = state.store.list_workers().await?;
    let queues = crate::api::fleet::queue_views(state).await?;
    Ok(json!({
        "type": "snapshot",
        "seq": seq,
        "runs": runs.iter().map(views::run_summary).collect::<Vec<_>>(),
        "workers": workers.iter().map(|w| crate::engine::worker_view(&w.info, &w.state, w.last_heartbeat_ms)).collect::<Vec<_>>(),
        "queues": queues,
    }))
}
