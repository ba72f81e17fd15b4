//! `GET /api/v1/ws`: a snapshot, then every event as it happens (docs/API.md).
//!
//! With `?run=ID` the client follows one run: its stored events carry the run's
//! sequence numbers, and `since` replays exactly what the client missed from the store.
//! Without `run` it follows the fleet: run summaries, workers, queues; `since` replays
//! from the bus's ring when the ring still holds everything after it.
//!
//! A client never slows anyone else: the bus drops what a lagging client has not read,
//! and that client is told to resync and disconnected. Frames are coalesced: at most
//! one every [`FRAME_INTERVAL`], carrying every event since the last one. At most
//! `--max-websockets` connections are open at once ([`WsSlots`]); more are refused with
//! 503 before the upgrade.

use super::auth::{needs, Allowed};
use super::error::ApiError;
use super::AppState;
use crate::bus::BusEvent;
use crate::store::RunQuery;
use crate::views;
use axum::extract::ws::{close_code, CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

/// Shortest gap between two frames to one client; bursts within it share a frame.
const FRAME_INTERVAL: Duration = Duration::from_millis(10);
/// Idle connections are pinged this often, so dead clients are noticed and proxies
/// keep the connection open.
const PING_EVERY: Duration = Duration::from_secs(20);
/// A client that takes longer than this to accept a frame is disconnected.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Stored events replayed per store read when catching up.
const REPLAY_PAGE: u32 = 5_000;

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

#[derive(Deserialize)]
struct Params {
    run: Option<String>,
    since: Option<u64>,
}

async fn subscribe(
    allowed: Allowed<needs::Read>,
    State(state): State<AppState>,
    params: Result<Query<Params>, axum::extract::rejection::QueryRejection>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    // Subscribed now, before the upgrade, so no revocation after the check is missed.
    let revoked: Revoked = match &state.auth {
        Some(auth) => Box::pin(auth.revoked(Arc::clone(&allowed.principal.name))),
        None => Box::pin(std::future::pending()),
    };
    let Query(p) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    // Taken first, so a server at its cap refuses without touching the store.
    let slot = state
        .websockets
        .take()
        .ok_or(ApiError::WebSocketLimit(state.websockets.max))?;
    if let Some(run) = &p.run {
        if state.store.get_run(run).await?.is_none() {
            return Err(ApiError::NotFound(format!("run {run} not found")));
        }
    }
    Ok(ws.on_upgrade(move |socket| async move {
        let _slot = slot;
        let result = match p.run {
            Some(run) => follow_run(state, socket, run, p.since, revoked).await,
            None => follow_fleet(state, socket, p.since, revoked).await,
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

async fn send(socket: &mut WebSocket, body: &Value) -> Result<(), Closed> {
    send_text(socket, body.to_string()).await
}

async fn send_text(socket: &mut WebSocket, text: String) -> Result<(), Closed> {
    send_raw(socket, Message::Text(Utf8Bytes::from(text))).await
}

async fn send_raw(socket: &mut WebSocket, msg: Message) -> Result<(), Closed> {
    match tokio::time::timeout(SEND_TIMEOUT, socket.send(msg)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("send failed: {e}")),
        Err(_) => Err("client too slow to read".into()),
    }
}

async fn follow_run(
    state: AppState,
    mut socket: WebSocket,
    run_id: String,
    since: Option<u64>,
    revoked: Revoked,
) -> Result<(), Closed> {
    // Subscribe before reading the store: whatever commits after the read is published
    // after this point, so it arrives here; duplicates are dropped by sequence number.
    let (mut rx, _) = state.bus.subscribe_since(None);
    let known = state
        .store
        .get_run(&run_id)
        .await
        .map_err(|e| e.to_string())?
        .map_or(0, |r| r.last_seq);
    let since = match since {
        Some(s) if s > known => {
            let reason = format!("sequence {s} is beyond this run's last event {known}");
            send(&mut socket, &json!({"type": "resync", "reason": reason})).await?;
            None
        }
        other => other,
    };
    let mut last_seq = match since {
        Some(since) => replay_stored(&state, &mut socket, &run_id, since).await?,
        None => {
            let run = super::runs::run_document(&state, &run_id)
                .await
                .map_err(|e| e.to_string())?;
            let seq = run["last_seq"].as_u64().unwrap_or(0);
            send(
                &mut socket,
                &json!({"type": "snapshot", "run": run, "seq": seq}),
            )
            .await?;
            seq
        }
    };
    let run_id: Arc<str> = Arc::from(run_id.as_str());
    stream(
        &mut socket,
        &mut rx,
        state.shutdown.clone(),
        revoked,
        |ev, pending| {
            if ev.run_id.as_deref() != Some(&*run_id) {
                return;
            }
            match ev.run_seq {
                Some(seq) if seq <= last_seq => {}
                Some(seq) => {
                    last_seq = seq;
                    pending.push(Arc::clone(ev));
                }
                None => pending.push(Arc::clone(ev)),
            }
        },
    )
    .await
}

/// Sends stored events after `since`; returns the last sequence number sent.
async fn replay_stored(
    state: &AppState,
    socket: &mut WebSocket,
    run_id: &str,
    since: u64,
) -> Result<u64, Closed> {
    let mut last = since;
    loop {
        let events = state
            .store
            .events(run_id, last, None, REPLAY_PAGE)
            .await
            .map_err(|e| e.to_string())?;
        let Some(tail) = events.last() else {
            return Ok(last);
        };
        last = tail.seq;
        let full = events.len() as u32 == REPLAY_PAGE;
        let bodies: Vec<Value> = events.iter().map(views::event).collect();
        send(socket, &json!({"type": "events", "events": bodies})).await?;
        if !full {
            return Ok(last);
        }
    }
}

async fn follow_fleet(
    state: AppState,
    mut socket: WebSocket,
    since: Option<u64>,
    revoked: Revoked,
) -> Result<(), Closed> {
    let (mut rx, replay) = state.bus.subscribe_since(since);
    let mut last_seq = 0;
    match replay {
        Some(events) => {
            let bodies: Vec<Value> = events
                .iter()
                .filter(|e| fleet_event(e))
                .map(|e| e.body.clone())
                .collect();
            last_seq = events.last().map_or(since.unwrap_or(0), |e| e.seq);
            if !bodies.is_empty() {
                send(&mut socket, &json!({"type": "events", "events": bodies})).await?;
            }
        }
        None => {
            if since.is_some() {
                send(&mut socket, &json!({"type": "resync", "reason": "events after that sequence are no longer kept"})).await?;
            }
            let snapshot = fleet_snapshot(&state).await.map_err(|e| e.to_string())?;
            send(&mut socket, &snapshot).await?;
        }
    }
    stream(
        &mut socket,
        &mut rx,
        state.shutdown.clone(),
        revoked,
        |ev, pending| {
            if ev.seq <= last_seq || !fleet_event(ev) {
                return;
            }
            pending.push(Arc::clone(ev));
        },
    )
    .await
}

/// The fleet stream carries run summaries, workers and queues, not every task event.
fn fleet_event(ev: &BusEvent) -> bool {
    ev.run_id.is_none()
}

async fn fleet_snapshot(state: &AppState) -> Result<Value, ApiError> {
    let seq = state.bus.last_seq();
    let runs = state
        .store
        .list_runs(&RunQuery {
            limit: 100,
            ..Default::default()
        })
        .await?;
    let workers = state.store.list_workers().await?;
    let queues = super::fleet::queue_views(state).await?;
    Ok(json!({
        "type": "snapshot",
        "seq": seq,
        "runs": runs.iter().map(views::run_summary).collect::<Vec<_>>(),
        "workers": workers.iter().map(|w| crate::engine::worker_view(&w.info, &w.state, w.last_heartbeat_ms)).collect::<Vec<_>>(),
        "queues": queues,
    }))
}

/// Relays bus events through `select` into coalesced frames until the client leaves,
/// lags, the server stops, or the stream's token is revoked.
async fn stream(
    socket: &mut WebSocket,
    rx: &mut tokio::sync::broadcast::Receiver<Arc<BusEvent>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    mut revoked: Revoked,
    mut select: impl FnMut(&Arc<BusEvent>, &mut Vec<Arc<BusEvent>>),
) -> Result<(), Closed> {
    let mut pending: Vec<Arc<BusEvent>> = Vec::new();
    let mut next_frame = Instant::now();
    let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    loop {
        let flush_at = async {
            if pending.is_empty() {
                std::future::pending::<()>().await
            } else {
                tokio::time::sleep_until(next_frame).await
            }
        };
        tokio::select! {
            ev = rx.recv() => match ev {
                Ok(ev) => select(&ev, &mut pending),
                Err(RecvError::Lagged(n)) => {
                    let reason = format!("client fell behind by {n} events");
                    let _ = send(socket, &json!({"type": "resync", "reason": reason})).await;
                    let _ = socket.send(Message::Close(None)).await;
                    return Err("lagged".into());
                }
                Err(RecvError::Closed) => return Ok(()),
            },
            msg = socket.recv() => match msg {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Ok(()),
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => send_raw(socket, Message::Ping(Default::default())).await?,
            // A client must learn the server went away, not sit on a silent socket.
            _ = async { drop(stop.wait_for(|s| *s).await) } => {
                let frame = CloseFrame { code: close_code::AWAY, reason: "server shutting down".into() };
                let _ = send_raw(socket, Message::Close(Some(frame))).await;
                return Ok(());
            }
            _ = &mut revoked => {
                let frame = CloseFrame { code: close_code::POLICY, reason: "the API token was revoked".into() };
                let _ = send_raw(socket, Message::Close(Some(frame))).await;
                return Ok(());
            }
            _ = flush_at => {
                let frame = events_frame(&coalesce(std::mem::take(&mut pending)));
                send_text(socket, frame).await?;
                next_frame = Instant::now() + FRAME_INTERVAL;
            }
        }
    }
}

/// An `events` frame from events already encoded as JSON: no event is encoded twice.
fn events_frame(events: &[Arc<BusEvent>]) -> String {
    let size = events.iter().map(|e| e.json.len() + 1).sum::<usize>() + 32;
    let mut frame = String::with_capacity(size);
    frame.push_str(r#"{"type":"events","events":["#);
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            frame.push(',');
        }
        frame.push_str(&e.json);
    }
    frame.push_str("]}");
    frame
}

/// Keeps only the latest of events that supersede each other; transitions and logs
/// are all kept, in order.
fn coalesce(events: Vec<Arc<BusEvent>>) -> Vec<Arc<BusEvent>> {
    let mut last: HashMap<&str, usize> = HashMap::new();
    for (i, e) in events.iter().enumerate() {
        if let Some(k) = &e.supersedes {
            last.insert(k, i);
        }
    }
    if last.is_empty() {
        return events;
    }
    let keep: Vec<bool> = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            e.supersedes
                .as_deref()
                .is_none_or(|k| last.get(k) == Some(&i))
        })
        .collect();
    events
        .into_iter()
        .zip(keep)
        .filter(|(_, k)| *k)
        .map(|(e, _)| e)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{coalesce, events_frame, WsSlots};
    use crate::bus::Bus;
    use serde_json::{json, Value};

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

    #[test]
    fn coalescing_keeps_the_latest_summary_and_every_transition() {
        let bus = Bus::new();
        let (mut rx, _) = bus.subscribe_since(None);
        bus.publish([
            (
                None,
                None,
                json!({"kind": "run_updated", "run": {"id": "r", "n": 1}}),
            ),
            (Some("r".into()), Some(1), json!({"kind": "task", "seq": 1})),
            (
                None,
                None,
                json!({"kind": "run_updated", "run": {"id": "r", "n": 2}}),
            ),
            (Some("r".into()), Some(2), json!({"kind": "task", "seq": 2})),
            (
                None,
                None,
                json!({"kind": "run_created", "run": {"id": "s"}}),
            ),
        ]);
        let mut all = Vec::new();
        while let Ok(e) = rx.try_recv() {
            all.push(e);
        }
        let frame: Value = serde_json::from_str(&events_frame(&coalesce(all))).unwrap();
        assert_eq!(
            frame,
            json!({"type": "events", "events": [
                {"kind": "task", "seq": 1},
                {"kind": "run_updated", "run": {"id": "r", "n": 2}, "seq": 3},
                {"kind": "task", "seq": 2},
                {"kind": "run_created", "run": {"id": "s"}, "seq": 5},
            ]})
        );
    }
}
