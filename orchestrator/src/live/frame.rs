//! A frame: the coalesced events of one frame interval of one stream, encoded at most
//! once and shared by every subscriber that takes it whole.
//!
//! ```json
//! {"type": "events", "seq_from": 101, "seq_to": 180, "run": RunSummary, "events": [...]}
//! ```
//!
//! `seq_from..=seq_to` is the range of stored events (run sequence numbers on a run's
//! stream, bus sequence numbers on the fleet's) the frame accounts for: each one is in
//! `events` or was superseded by a later one that is. A client that has applied the
//! frame resumes exactly with `since=seq_to`. A frame of live-only events (progress,
//! text) has no range. `run` (a run's stream only) is the run's latest summary, when it
//! changed.

use super::coalesce::coalesce;
use super::event::BusEvent;
use axum::extract::ws::Utf8Bytes;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::{Arc, OnceLock};

/// One frame, shared behind an `Arc` by every subscriber of its stream.
#[derive(Debug)]
pub struct Frame {
    pub seq_from: Option<u64>,
    pub seq_to: Option<u64>,
    /// Coalesced, in order.
    pub events: Vec<Arc<BusEvent>>,
    /// The run's latest summary ([`BusEvent::summary_json`]).
    pub run: Option<Arc<BusEvent>>,
    /// When its oldest stored event became durable (ms since the epoch): where the
    /// delivery latency a client sees starts, for the server's share of it.
    pub stored_at_ms: Option<i64>,
    /// When it was made: a subscriber that joined after it was cut (and caught up
    /// through a snapshot meanwhile) writes it late for a reason of its own.
    pub cut_at: std::time::Instant,
    /// The frame as JSON text, encoded by the first subscriber that sends it whole.
    encoded: OnceLock<Utf8Bytes>,
    /// Subscribers still writing it to their sockets; the stream cuts the next frame
    /// once this reaches zero (or the frame interval is up).
    unwritten: AtomicIsize,
}

impl Frame {
    /// A frame of `events` (one interval's, in publication order, not yet coalesced)
    /// and the run's latest summary.
    pub fn build(events: Vec<Arc<BusEvent>>, run: Option<Arc<BusEvent>>) -> Self {
        let (seq_from, seq_to) = range(&events);
        Self::new(seq_from, seq_to, coalesce(events), run)
    }

    pub fn new(
        seq_from: Option<u64>,
        seq_to: Option<u64>,
        events: Vec<Arc<BusEvent>>,
        run: Option<Arc<BusEvent>>,
    ) -> Self {
        let stored_at_ms = events.iter().filter_map(|e| e.stored_at_ms).min();
        Self {
            seq_from,
            seq_to,
            events,
            run,
            stored_at_ms,
            cut_at: std::time::Instant::now(),
            encoded: OnceLock::new(),
            unwritten: AtomicIsize::new(0),
        }
    }

    /// Expects `n` subscribers to write it (set before it is sent to them).
    pub(super) fn expect_writes(&self, n: usize) {
        self.unwritten.store(n as isize, Ordering::Release);
    }

    /// One subscriber is done with it (written, or nothing in it was for them).
    /// Answers whether it was the last one.
    pub(super) fn written(&self) -> bool {
        self.unwritten.fetch_sub(1, Ordering::AcqRel) == 1
    }

    /// Whether every subscriber it was sent to is done with it.
    pub(super) fn all_written(&self) -> bool {
        self.unwritten.load(Ordering::Acquire) <= 0
    }

    /// Milliseconds since its oldest stored event became durable.
    pub fn age_ms(&self) -> Option<i64> {
        self.stored_at_ms.map(|at| now_ms() - at)
    }

    /// Nothing to tell a client.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.run.is_none() && self.seq_to.is_none()
    }

    /// The frame as JSON text: encoded once, then shared.
    pub fn bytes(&self) -> Utf8Bytes {
        self.encoded
            .get_or_init(|| Utf8Bytes::from(self.encode()))
            .clone()
    }

    /// The frame as JSON text.
    pub fn encode(&self) -> String {
        let size = self.events.iter().map(|e| e.json.len() + 1).sum::<usize>()
            + self
                .run
                .as_ref()
                .and_then(|r| r.summary_json.as_ref())
                .map_or(0, |s| s.len())
            + 96;
        let mut out = String::with_capacity(size);
        out.push_str(r#"{"type":"events""#);
        if let (Some(from), Some(to)) = (self.seq_from, self.seq_to) {
            out.push_str(&format!(r#","seq_from":{from},"seq_to":{to}"#));
        }
        if let Some(run) = self.run.as_ref().and_then(|r| r.summary_json.as_ref()) {
            out.push_str(r#","run":"#);
            out.push_str(run);
        }
        out.push_str(r#","events":["#);
        for (i, e) in self.events.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&e.json);
        }
        out.push_str("]}");
        out
    }
}

/// Most events (before coalescing) one frame takes: a commit of thousands of events is
/// sent as several frames, so clients receive and decode the first ones while the rest
/// are still being written, instead of every event waiting for a frame of megabytes.
const FRAME_EVENTS: usize = 1_000;

/// The frames of one interval's events (in publication order) and the run's latest
/// summary, which goes with the last one: none when there is nothing.
pub(super) fn frames_of(batch: Vec<Arc<BusEvent>>, run: Option<Arc<BusEvent>>) -> Vec<Frame> {
    if batch.len() <= FRAME_EVENTS {
        return if batch.is_empty() && run.is_none() {
            Vec::new()
        } else {
            vec![Frame::build(batch, run)]
        };
    }
    let mut chunks: Vec<Vec<Arc<BusEvent>>> =
        batch.chunks(FRAME_EVENTS).map(<[_]>::to_vec).collect();
    let tail = chunks.pop().unwrap_or_default();
    let mut frames: Vec<Frame> = chunks.into_iter().map(|c| Frame::build(c, None)).collect();
    frames.push(Frame::build(tail, run));
    frames
}

/// Wall-clock milliseconds since the epoch, as `stored_at_ms` is stamped.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The lowest and highest stored sequence numbers among `events`.
pub fn range(events: &[Arc<BusEvent>]) -> (Option<u64>, Option<u64>) {
    let mut seqs = events.iter().filter_map(|e| e.cursor());
    let first = seqs.next();
    let last = seqs.next_back().or(first);
    (first, last)
}

#[cfg(test)]
mod tests {
    use super::super::event::testing;
    use super::*;
    use crate::api_types::{Event, LiveEvent};
    use serde_json::{json, Value};

    #[test]
    fn a_frame_names_the_range_it_accounts_for_and_carries_the_latest_run_summary() {
        let stored = |seq: u64, state: &str| Event {
            seq,
            ..testing::stored("task", Some("a"), Some(state), 1)
        };
        let task = |seq: u64, state: &str| {
            let e = LiveEvent::Stored(stored(seq, state));
            Arc::new(BusEvent::new(Some("r".into()), Some(seq), None, e))
        };
        let mut summary = testing::summary("r");
        summary.counts.insert("succeeded".into(), 1);
        let mut updated = LiveEvent::RunUpdated(crate::api_types::RunEvent {
            run: summary.clone(),
            seq: 0,
            stored_at_ms: None,
        });
        updated.stamp(4);
        let run = Arc::new(BusEvent::new(None, None, Some(1), updated));
        let mut run_json = serde_json::to_value(&summary).unwrap();
        run_json["stored_at_ms"] = 4.into();
        let frame = Frame::build(
            vec![task(5, "queued"), task(6, "running"), task(7, "succeeded")],
            Some(run),
        );
        let v: Value = serde_json::from_str(frame.bytes().as_str()).unwrap();
        assert_eq!(
            v,
            json!({"type": "events", "seq_from": 5, "seq_to": 7,
                   "run": run_json,
                   "events": [serde_json::to_value(stored(7, "succeeded")).unwrap()]})
        );
        let live = Frame::build(
            vec![Arc::new(BusEvent::new(
                Some("r".into()),
                None,
                None,
                testing::progress("a", 1, None),
            ))],
            None,
        );
        let v: Value = serde_json::from_str(&live.encode()).unwrap();
        assert!(v.get("seq_to").is_none() && v["events"].as_array().unwrap().len() == 1);
    }
}

#[cfg(test)]
mod framing_tests {
    use super::*;
    use crate::live::event::testing;

    fn task(seq: u64) -> Arc<BusEvent> {
        Arc::new(BusEvent::new(
            Some("r".into()),
            Some(seq),
            None,
            testing::task(&format!("t{}", seq % 7), "running"),
        ))
    }

    #[test]
    fn a_large_commit_is_framed_in_order_in_contiguous_ranges_with_the_summary_last() {
        let n = FRAME_EVENTS as u64 * 2 + 5;
        let batch: Vec<_> = (1..=n).map(task).collect();
        let run = Arc::new(BusEvent::new(
            None,
            None,
            Some(1),
            testing::run_updated("r"),
        ));
        let frames = frames_of(batch, Some(run));
        assert_eq!(frames.len(), 3);
        let mut next = 1;
        for (i, f) in frames.iter().enumerate() {
            assert_eq!(
                f.seq_from,
                Some(next),
                "frame {i} starts where the last ended"
            );
            next = f.seq_to.unwrap() + 1;
            assert_eq!(f.run.is_some(), i == frames.len() - 1);
            // Coalesced within the frame: the latest event of each task it holds.
            assert!(f.events.len() <= 7);
        }
        assert_eq!(next, n + 1);
        assert_eq!(frames_of(vec![task(1)], None).len(), 1);
        assert!(frames_of(Vec::new(), None).is_empty());
    }
}
