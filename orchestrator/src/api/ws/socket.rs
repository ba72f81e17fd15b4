//! One client's end of a stream: sends what it is owed from each shared frame, pings,
//! and ends the connection when the client leaves or lags, the server stops, or the
//! token is revoked.

use super::{Closed, Revoked};
use crate::live::{BusEvent, Frame, Kind, Subscription};
use axum::extract::ws::{close_code, CloseFrame, Message, Utf8Bytes, WebSocket};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

/// Idle connections are pinged this often, so dead clients are noticed and proxies
/// keep the connection open.
const PING_EVERY: Duration = Duration::from_secs(20);
/// A client that takes longer than this to accept a frame is disconnected.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Shortest gap between two run summaries sent to a client that filters tasks: it gets
/// counts a few times a second, not with every frame.
const FILTERED_SUMMARY_EVERY: Duration = Duration::from_millis(250);

pub(super) async fn send(socket: &mut WebSocket, body: &Value) -> Result<(), Closed> {
    send_text(socket, body.to_string()).await
}

pub(super) async fn send_text(socket: &mut WebSocket, text: String) -> Result<(), Closed> {
    send_raw(socket, Message::Text(Utf8Bytes::from(text))).await
}

pub(super) async fn send_raw(socket: &mut WebSocket, msg: Message) -> Result<(), Closed> {
    match tokio::time::timeout(SEND_TIMEOUT, socket.send(msg)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("send failed: {e}")),
        Err(_) => Err("client too slow to read".into()),
    }
}

/// Sends a `resync` frame: the client must start over with a fresh snapshot.
pub(super) async fn resync(socket: &mut WebSocket, reason: &str) -> Result<(), Closed> {
    metrics::counter!("apex_ws_resyncs_total").increment(1);
    send(socket, &json!({"type": "resync", "reason": reason})).await
}

/// Ends a connection the server cannot serve (a store read failed): the client gets a
/// `resync` frame saying why, then a close with code 1013 (try again later), rather
/// than a bare close it cannot tell from a network failure.
pub(super) async fn give_up(socket: &mut WebSocket, why: &str) {
    let _ = resync(socket, why).await;
    // A close frame's reason holds at most 123 bytes.
    let mut end = why.len().min(123);
    while !why.is_char_boundary(end) {
        end -= 1;
    }
    let frame = CloseFrame {
        code: close_code::AGAIN,
        reason: why[..end].into(),
    };
    let _ = send_raw(socket, Message::Close(Some(frame))).await;
}

/// What one client takes from each shared frame.
#[derive(Debug)]
pub(super) struct Picker {
    /// The last stored event the client has (from its snapshot, replay or frames):
    /// what a frame repeats below it is left out.
    cursor: u64,
    /// The tasks a filtering client follows (`tasks=`); `None`: all of them.
    only: Option<Arc<HashSet<Box<str>>>>,
    /// A filtering client's latest run summary not sent yet, and when it may be.
    held_run: Option<Arc<BusEvent>>,
    next_run_at: Instant,
}

/// What to send a client for one frame.
#[derive(Debug)]
pub(super) enum Pick {
    /// The frame as every subscriber gets it.
    Shared(Utf8Bytes),
    /// A frame of this client's own.
    Own(String),
    Nothing,
}

impl Picker {
    pub fn new(cursor: u64, only: Option<Arc<HashSet<Box<str>>>>) -> Self {
        Self {
            cursor,
            only,
            held_run: None,
            next_run_at: Instant::now(),
        }
    }

    pub fn pick(&mut self, f: &Frame, now: Instant) -> Pick {
        let cursor = self.cursor;
        let fresh = |e: &&Arc<BusEvent>| e.cursor().is_none_or(|s| s > cursor);
        let seq_to = f.seq_to.filter(|&to| to > cursor);
        let seq_from = f
            .seq_from
            .map(|from| from.max(cursor + 1))
            .filter(|_| seq_to.is_some());
        self.cursor = self.cursor.max(f.seq_to.unwrap_or(0));
        let Some(only) = &self.only else {
            if f.seq_from.is_none_or(|from| from > cursor) {
                return Pick::Shared(f.bytes());
            }
            // The client's own replay already covers part of this frame.
            let events: Vec<_> = f.events.iter().filter(fresh).cloned().collect();
            if events.is_empty() && f.run.is_none() {
                return Pick::Nothing;
            }
            return Pick::Own(Frame::new(seq_from, seq_to, events, f.run.clone()).encode());
        };
        let events: Vec<_> = f
            .events
            .iter()
            .filter(fresh)
            .filter(|e| {
                e.kind == Kind::Run || e.subject.as_deref().is_some_and(|t| only.contains(t))
            })
            .cloned()
            .collect();
        if f.run.is_some() {
            self.held_run = f.run.clone();
        }
        let run_moved = events.iter().any(|e| e.kind == Kind::Run);
        let run = self
            .held_run
            .take_if(|_| run_moved || now >= self.next_run_at);
        if run.is_some() {
            self.next_run_at = now + FILTERED_SUMMARY_EVERY;
        }
        if events.is_empty() && run.is_none() {
            return Pick::Nothing;
        }
        Pick::Own(Frame::new(seq_from, seq_to, events, run).encode())
    }

    /// When a held run summary falls due.
    fn held_due(&self) -> Option<Instant> {
        self.held_run.as_ref().map(|_| self.next_run_at)
    }

    /// A frame carrying only the held run summary.
    fn take_held(&mut self, now: Instant) -> Option<String> {
        let run = self.held_run.take()?;
        self.next_run_at = now + FILTERED_SUMMARY_EVERY;
        Some(Frame::new(None, None, Vec::new(), Some(run)).encode())
    }
}

/// Relays the subscription's frames until the client leaves, lags, the server stops,
/// or the stream's token is revoked.
pub(super) async fn relay(
    socket: &mut WebSocket,
    mut sub: Subscription,
    mut picker: Picker,
    mut stop: tokio::sync::watch::Receiver<bool>,
    mut revoked: Revoked,
) -> Result<(), Closed> {
    let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    let relaying = sub.relaying();
    loop {
        let held_due = picker.held_due();
        tokio::select! {
            f = sub.frames.recv() => match f {
                Ok(f) => {
                    let sent = match picker.pick(&f, Instant::now()) {
                        Pick::Shared(bytes) => Some(send_raw(socket, Message::Text(bytes)).await),
                        Pick::Own(text) => Some(send_text(socket, text).await),
                        Pick::Nothing => None,
                    };
                    sub.written(&f);
                    if let Some(sent) = sent {
                        sent?;
                        record_written(&f, relaying);
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    let reason = format!("client fell behind by {n} frames");
                    let _ = resync(socket, &reason).await;
                    let _ = socket.send(Message::Close(None)).await;
                    return Err("lagged".into());
                }
                Err(RecvError::Closed) => return Ok(()),
            },
            _ = sleep_until(held_due) => {
                if let Some(text) = picker.take_held(Instant::now()) {
                    send_text(socket, text).await?;
                }
            }
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
        }
    }
}

/// Records how long after its events became durable `f` was written to this socket:
/// in `apex_ws_frame_written_seconds` when it was cut while this client was relaying
/// (live delivery), else counted in `apex_ws_frames_caught_up_total`: a frame that
/// waited in the channel while this client's snapshot was read and sent measures the
/// snapshot, not delivery, and such frames (seconds old when fifty clients open a big
/// run at once) made the histogram's mean meaningless; their age goes to
/// `apex_ws_frame_caught_up_seconds`.
fn record_written(f: &Frame, relaying: std::time::Instant) {
    if !is_live(f, relaying) {
        metrics::counter!("apex_ws_frames_caught_up_total").increment(1);
        // Apart from live delivery, but still measured: a watcher times every event
        // stored after its snapshot arrived, so these are in what it sees.
        if let Some(age) = f.age_ms() {
            metrics::histogram!("apex_ws_frame_caught_up_seconds").record(age as f64 / 1000.0);
        }
    } else if let Some(age) = f.age_ms() {
        metrics::histogram!("apex_ws_frame_written_seconds").record(age as f64 / 1000.0);
    }
}

/// Whether `f` was cut once the client was relaying (since `relaying`).
fn is_live(f: &Frame, relaying: std::time::Instant) -> bool {
    f.cut_at >= relaying
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api_types::{Event, LiveEvent};
    use crate::live::testing;

    fn task(seq: u64, id: &str, state: &str) -> Arc<BusEvent> {
        let e = Event {
            seq,
            ..testing::stored("task", Some(id), Some(state), 1)
        };
        Arc::new(BusEvent::new(
            Some("r".into()),
            Some(seq),
            None,
            LiveEvent::Stored(e),
        ))
    }

    fn text(id: &str) -> Arc<BusEvent> {
        Arc::new(BusEvent::new(
            Some("r".into()),
            None,
            None,
            testing::text(id, 1, "x"),
        ))
    }

    fn summary() -> Arc<BusEvent> {
        Arc::new(BusEvent::new(
            None,
            None,
            Some(1),
            testing::run_updated("r"),
        ))
    }

    fn parsed(p: Pick) -> Value {
        match p {
            Pick::Shared(b) => serde_json::from_str(b.as_str()).unwrap(),
            Pick::Own(s) => serde_json::from_str(&s).unwrap(),
            Pick::Nothing => Value::Null,
        }
    }

    #[test]
    fn a_frame_the_client_partly_replayed_is_cut_to_what_it_has_not_seen() {
        let frame = Frame::build(
            vec![
                task(5, "a", "queued"),
                task(6, "b", "queued"),
                text("a"),
                task(7, "b", "running"),
            ],
            None,
        );
        let now = Instant::now();
        let mut fresh = Picker::new(4, None);
        assert!(matches!(fresh.pick(&frame, now), Pick::Shared(_)));
        let mut behind = Picker::new(5, None);
        let v = parsed(behind.pick(&frame, now));
        assert_eq!(
            (v["seq_from"].as_u64(), v["seq_to"].as_u64()),
            (Some(6), Some(7))
        );
        assert_eq!(
            v["events"].as_array().unwrap().len(),
            2,
            "b's latest and the text: {v}"
        );
        let mut ahead = Picker::new(9, None);
        let v = parsed(ahead.pick(&frame, now));
        assert!(v.get("seq_to").is_none());
        assert_eq!(v["events"][0]["text_delta"], "x", "live events still go");
        assert_eq!(ahead.cursor, 9);
    }

    #[test]
    fn only_frames_cut_while_relaying_count_as_live_delivery() {
        let before = Frame::build(vec![task(1, "a", "queued")], None);
        let relaying = std::time::Instant::now();
        let after = Frame::build(vec![task(2, "a", "running")], None);
        assert!(!is_live(&before, relaying), "caught up after the snapshot");
        assert!(is_live(&after, relaying));
    }

    #[test]
    fn a_filtering_client_gets_its_tasks_and_counts_a_few_times_a_second() {
        let only: HashSet<Box<str>> = ["a".into()].into_iter().collect();
        let mut p = Picker::new(0, Some(Arc::new(only)));
        let now = Instant::now();
        let f1 = Frame::build(
            vec![task(1, "a", "queued"), task(2, "b", "queued")],
            Some(summary()),
        );
        let v = parsed(p.pick(&f1, now));
        assert_eq!(v["events"].as_array().unwrap().len(), 1);
        assert!(v["run"].is_object(), "the first summary goes at once");
        let f2 = Frame::build(vec![task(3, "b", "running")], Some(summary()));
        assert!(matches!(p.pick(&f2, now), Pick::Nothing), "held back");
        assert!(p.held_due().is_some());
        let v: Value = serde_json::from_str(&p.take_held(now).unwrap()).unwrap();
        assert!(v["run"].is_object() && v["events"].as_array().unwrap().is_empty());
        assert_eq!(p.cursor, 3);
    }
}
