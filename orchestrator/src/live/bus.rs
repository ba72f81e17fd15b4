//! The bus: where the writer publishes what it stored (and what workers stream), routed
//! to the run's stream or the fleet's.
//!
//! Publishing never waits for subscribers: it classifies and encodes each event once,
//! appends it to a stream's pending list, and returns. A run's events go to that run's
//! stream only if someone watches it (or its attempts stream text); fleet events are
//! numbered, kept in the [`Ring`] for `since`, and go to the fleet stream, and a run
//! summary also goes to its run's stream, as the run's frames carry it.

use super::event::{BusEvent, Kind};
use super::ring::Ring;
use super::stream::{Cadence, Feed, Stream, Streams, Subscription};
use crate::api_types::LiveEvent;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Most events of one run handed to its stream at once while publishing.
const PUSH_EVENTS: usize = 1_000;

/// Bounds and timing of the bus.
#[derive(Debug, Clone, Copy)]
pub struct BusConfig {
    /// Most fleet events kept for `since`.
    pub ring_events: usize,
    /// Most bytes (encoded) of fleet events kept for `since`.
    pub ring_bytes: usize,
    /// Most bytes of streamed text kept per running attempt for clients that join
    /// mid-answer.
    pub answer_bytes: usize,
    /// Most stored events (and bytes of them) a watched run's stream keeps, so clients
    /// joining or resuming within them share one replay instead of each reading the
    /// store.
    pub recent_events: usize,
    pub recent_bytes: usize,
    pub run: Cadence,
    pub fleet: Cadence,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            ring_events: 65_536,
            ring_bytes: 16 << 20,
            answer_bytes: 256 << 10,
            // Several seconds of a busy run's coalesced events.
            recent_events: 32_768,
            recent_bytes: 8 << 20,
            // The longest a frame waits for subscribers still writing the last one;
            // summaries a few times a second are enough for counts.
            run: Cadence {
                frame: Duration::from_millis(20),
                summary: Duration::from_millis(250),
            },
            fleet: Cadence {
                frame: Duration::from_millis(50),
                summary: Duration::from_millis(250),
            },
        }
    }
}

/// A cheap-to-clone handle on the bus.
#[derive(Clone)]
pub struct Bus {
    inner: Arc<Inner>,
}

struct Inner {
    config: BusConfig,
    /// Run streams by run id; locked for one publish, join or stream removal, never
    /// across an `.await`. Taken before any stream's own lock.
    streams: Arc<Streams>,
    fleet: Arc<Stream>,
    /// Fleet events kept for `since`; locked briefly on publish and on join.
    ring: Mutex<Ring>,
    /// The last bus sequence number given to a fleet event.
    seq: AtomicU64,
}

impl Default for Bus {
    fn default() -> Self {
        Self::new(BusConfig::default())
    }
}

impl Bus {
    pub fn new(config: BusConfig) -> Self {
        let streams: Arc<Streams> = Arc::default();
        // The fleet resumes from its ring instead.
        let fleet = Stream::new(None, config.fleet, 0, (0, 0), std::sync::Weak::new());
        Self {
            inner: Arc::new(Inner {
                config,
                streams,
                fleet,
                ring: Mutex::new(Ring::new(config.ring_events, config.ring_bytes)),
                seq: AtomicU64::new(0),
            }),
        }
    }

    /// Publishes events in order: `(run_id, run_seq, event)`; a run's stored events
    /// carry their `run_seq`, live-only and fleet events none.
    pub fn publish(
        &self,
        events: impl IntoIterator<Item = (Option<Arc<str>>, Option<u64>, LiveEvent)>,
    ) {
        let inner = &*self.inner;
        let mut streams = inner.streams.lock();
        let mut fleet = Vec::new();
        // Consecutive events of one run go to its stream in one push.
        let mut batch: Vec<Arc<BusEvent>> = Vec::new();
        // Whether the run of `batch` has a stream, or will once `batch` is routed (it
        // holds text): an event of any other run reaches nobody.
        let mut wanted = false;
        for (run_id, run_seq, body) in events {
            match run_id {
                Some(run) => {
                    if batch
                        .first()
                        .is_some_and(|e| e.run_id.as_ref() != Some(&run))
                    {
                        self.route(&mut streams, std::mem::take(&mut batch));
                    }
                    if batch.is_empty() {
                        wanted = streams.contains_key(&run);
                    }
                    // Most runs have no watcher: their events are dropped here, before
                    // they are classified and encoded (most of what publishing costs).
                    // Text starts a stream, for whoever joins mid-answer; what came
                    // before it in the batch cannot belong to an answer, so is not lost.
                    wanted |= body.class() == Kind::Text;
                    if !wanted {
                        continue;
                    }
                    batch.push(Arc::new(BusEvent::new(Some(run), run_seq, None, body)));
                    // A commit of thousands of events reaches the stream in pieces, so
                    // its first frame is cut while the rest are still being encoded.
                    if batch.len() == PUSH_EVENTS {
                        self.route(&mut streams, std::mem::take(&mut batch));
                    }
                }
                None => {
                    // A run's summary follows its events.
                    self.route(&mut streams, std::mem::take(&mut batch));
                    let seq = inner.seq.fetch_add(1, Ordering::Relaxed) + 1;
                    let e = Arc::new(BusEvent::new(None, None, Some(seq), body));
                    let mut ring = inner.ring.lock();
                    ring.push(Arc::clone(&e));
                    metrics::gauge!("apex_live_ring_bytes").set(ring.bytes() as f64);
                    drop(ring);
                    if let Some(stream) = e.summary_of().and_then(|run| streams.get(run)) {
                        stream.push_summary(Arc::clone(&e));
                    }
                    fleet.push(e);
                }
            }
        }
        self.route(&mut streams, batch);
        drop(streams);
        if !fleet.is_empty() {
            inner.fleet.push(fleet);
        }
    }

    /// Hands one run's events to its stream: an existing one, or a new one when an
    /// attempt streams text (kept for whoever joins mid-answer).
    fn route(
        &self,
        streams: &mut std::collections::HashMap<Arc<str>, Arc<Stream>>,
        batch: Vec<Arc<BusEvent>>,
    ) {
        let Some(run) = batch.first().and_then(|e| e.run_id.clone()) else {
            return;
        };
        let stream = match streams.get(&run) {
            Some(s) => Arc::clone(s),
            None if batch.iter().any(|e| e.kind == Kind::Text) => {
                let s = self.new_stream(&run);
                streams.insert(Arc::clone(&run), Arc::clone(&s));
                s
            }
            None => return,
        };
        stream.push(batch);
        if stream.idle() {
            streams.remove(&run);
        }
    }

    fn new_stream(&self, run: &Arc<str>) -> Arc<Stream> {
        let c = &self.inner.config;
        Stream::new(
            Some(Arc::clone(run)),
            c.run,
            c.answer_bytes,
            (c.recent_events, c.recent_bytes),
            Arc::downgrade(&self.inner.streams),
        )
    }

    /// The last bus sequence number used.
    pub fn last_seq(&self) -> u64 {
        self.inner.seq.load(Ordering::Relaxed)
    }

    /// Subscribes to run `run_id`'s stream. `wanted` picks the tasks whose answers so
    /// far the subscription carries.
    pub fn join_run(
        &self,
        run_id: &str,
        feed: Feed,
        wanted: impl Fn(&str) -> bool,
    ) -> Subscription {
        let mut streams = self.inner.streams.lock();
        let stream = match streams.get(run_id) {
            Some(s) => Arc::clone(s),
            None => {
                let run: Arc<str> = Arc::from(run_id);
                let s = self.new_stream(&run);
                streams.insert(run, Arc::clone(&s));
                s
            }
        };
        stream.join(feed, wanted)
    }

    /// Subscribes to the fleet's stream, and returns the kept fleet events after
    /// `since` when all of them are still kept (`None` when some are gone).
    pub fn join_fleet(&self, since: Option<u64>) -> (Subscription, Option<Vec<Arc<BusEvent>>>) {
        // Joined first: whatever is published meanwhile is in both the replay and the
        // frames, and the client's cursor drops the repeats.
        let sub = self.inner.fleet.join(Feed::Frames, |_| false);
        let replay = since.and_then(|s| self.inner.ring.lock().after(s));
        (sub, replay)
    }

    /// Run streams open now (watched, or holding streamed text).
    pub fn run_streams(&self) -> usize {
        self.inner.streams.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::event::testing;
    use super::*;
    use serde_json::Value;
    use std::time::Duration;

    fn fast() -> BusConfig {
        let c = Cadence {
            frame: Duration::from_millis(5),
            summary: Duration::from_millis(30),
        };
        BusConfig {
            run: c,
            fleet: c,
            ..BusConfig::default()
        }
    }

    type Published = (Option<Arc<str>>, Option<u64>, LiveEvent);

    fn task(run: &str, seq: u64, id: &str, state: &str) -> Published {
        let e = crate::api_types::Event {
            seq,
            run_id: run.into(),
            ..testing::stored("task", Some(id), Some(state), 1)
        };
        (Some(run.into()), Some(seq), LiveEvent::Stored(e))
    }

    fn text(run: &str, id: &str, t: &str) -> Published {
        (Some(run.into()), None, testing::text(id, 1, t))
    }

    fn answer_text(e: &LiveEvent) -> &str {
        match e {
            LiveEvent::Answer(a) => &a.text,
            other => panic!("not an answer: {other:?}"),
        }
    }

    async fn next(sub: &mut Subscription) -> Arc<super::super::Frame> {
        tokio::time::timeout(Duration::from_secs(5), sub.frames.recv())
            .await
            .expect("a frame in time")
            .expect("open")
    }

    #[tokio::test]
    async fn subscribers_share_one_coalesced_frame_with_the_run_summary() {
        let bus = Bus::new(fast());
        let mut a = bus.join_run("r", Feed::Frames, |_| true);
        let mut b = bus.join_run("r", Feed::Frames, |_| true);
        bus.publish([
            task("r", 1, "x", "queued"),
            task("r", 2, "x", "running"),
            task("other", 1, "y", "queued"),
            task("r", 3, "x", "succeeded"),
            (None, None, testing::run_updated("r")),
        ]);
        let (fa, fb) = (next(&mut a).await, next(&mut b).await);
        assert!(Arc::ptr_eq(&fa, &fb), "one frame, shared");
        assert_eq!((fa.seq_from, fa.seq_to), (Some(1), Some(3)));
        assert_eq!(fa.events.len(), 1);
        assert_eq!(fa.events[0].state.as_deref(), Some("succeeded"));
        assert!(fa.run.is_some());
        assert_eq!(bus.run_streams(), 1, "no stream for a run nobody watches");
    }

    #[tokio::test]
    async fn joiners_resuming_from_one_cursor_share_one_store_read() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let bus = Bus::new(fast());
        let reads = Arc::new(AtomicUsize::new(0));
        let read = |reads: Arc<AtomicUsize>, since: u64, last: u64| async move {
            reads.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok::<_, ()>(super::super::StoredPage {
                since,
                events: Arc::from(Vec::new()),
                last,
                full: false,
            })
        };
        let joiners: Vec<_> = (0..50)
            .map(|_| bus.join_run("r", Feed::Frames, |_| true))
            .map(|sub| {
                let reads = Arc::clone(&reads);
                tokio::spawn(async move { sub.stored(7, 9, || read(reads, 7, 9)).await })
            })
            .collect();
        for j in joiners {
            assert_eq!(j.await.unwrap().unwrap().last, 9);
        }
        assert_eq!(reads.load(Ordering::SeqCst), 1, "fifty joiners, one read");
        let late = bus.join_run("r", Feed::Frames, |_| true);
        // (cursor, the snapshot's `through`, reads so far after asking). Joined after
        // that read began: events published in between may be in no frame it will
        // get, so it reads again. Then another cursor; then a snapshot read later than
        // that page reaches; then the same again, which that page serves.
        for (since, through, reads_after) in [(7, 9, 2), (8, 9, 3), (8, 10, 4), (8, 10, 4)] {
            late.stored(since, through, || read(Arc::clone(&reads), since, through))
                .await
                .unwrap();
            let n = reads.load(Ordering::SeqCst);
            assert_eq!(n, reads_after, "cursor {since}, through {through}");
        }
    }

    #[tokio::test]
    async fn a_subscriber_joining_mid_answer_gets_the_text_so_far_then_only_what_follows() {
        let bus = Bus::new(fast());
        bus.publish([
            task("r", 1, "a", "running"),
            text("r", "a", "The moon "),
            text("r", "a", "pulls"),
        ]);
        assert_eq!(bus.run_streams(), 1, "kept for whoever joins");
        let mut sub = bus.join_run("r", Feed::Frames, |_| true);
        assert_eq!(sub.answers.len(), 1);
        assert_eq!(answer_text(&sub.answers[0]), "The moon pulls");
        bus.publish([text("r", "a", " the tides")]);
        let f = next(&mut sub).await;
        assert_eq!(f.events[0].text.as_deref(), Some(" the tides"));
        // A second subscriber, after that frame: the whole text, as one answer.
        let late = bus.join_run("r", Feed::Frames, |_| true);
        assert_eq!(answer_text(&late.answers[0]), "The moon pulls the tides");
        drop((sub, late));
        bus.publish([task("r", 2, "a", "succeeded")]);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            bus.run_streams(),
            0,
            "a finished answer and no watcher: nothing kept"
        );
    }

    #[tokio::test]
    async fn events_of_a_run_nobody_watches_are_not_encoded() {
        let bus = Bus::new(fast());
        let encoded = || testing::ENCODED.with(std::cell::Cell::get);
        let before = encoded();
        bus.publish((1..=500).map(|i| task("quiet", i, &format!("t{i}"), "queued")));
        assert_eq!(encoded() - before, 0, "nobody watches run quiet");
        assert_eq!(bus.run_streams(), 0);
        // A watched run's events are encoded, a quiet run's beside them still not; text
        // starts a stream, taking the rest of its batch.
        let mut sub = bus.join_run("r", Feed::Frames, |_| true);
        let before = encoded();
        bus.publish([
            task("quiet", 501, "a", "running"),
            task("r", 1, "a", "running"),
            task("quiet", 502, "a", "succeeded"),
            task("talk", 1, "a", "running"),
            text("talk", "a", "Hi"),
            task("talk", 2, "a", "succeeded"),
        ]);
        assert_eq!(
            encoded() - before,
            3,
            "r's event, talk's text and what followed it"
        );
        let f = next(&mut sub).await;
        assert_eq!(f.events.len(), 1);
        assert_eq!(f.events[0].subject.as_deref(), Some("a"));
    }

    #[tokio::test]
    async fn summary_subscribers_get_counts_and_failures_a_few_times_a_second() {
        let bus = Bus::new(fast());
        let mut sub = bus.join_run("r", Feed::Summaries, |_| false);
        bus.publish([
            task("r", 1, "x", "running"),
            task("r", 2, "x", "failed"),
            task("r", 3, "y", "succeeded"),
            (None, None, testing::run_updated("r")),
        ]);
        let f = next(&mut sub).await;
        assert_eq!((f.seq_from, f.seq_to), (Some(1), Some(3)));
        let states: Vec<_> = f.events.iter().map(|e| e.state.as_deref()).collect();
        assert_eq!(states, [Some("failed")]);
        assert!(f.run.is_some());
    }

    #[tokio::test]
    async fn joiners_resuming_within_the_recent_events_share_one_rendered_replay() {
        use axum::extract::ws::Utf8Bytes;
        use std::sync::atomic::AtomicUsize;
        let bus = Bus::new(fast());
        let mut watcher = bus.join_run("r", Feed::Frames, |_| true);
        bus.publish([task("r", 5, "a", "queued"), task("r", 6, "b", "queued")]);
        next(&mut watcher).await;
        bus.publish([task("r", 7, "a", "running")]);
        next(&mut watcher).await;
        let renders = AtomicUsize::new(0);
        let render = |events: Vec<Arc<BusEvent>>| {
            renders.fetch_add(1, Ordering::SeqCst);
            Some(Utf8Bytes::from(
                super::super::Frame::build(events, None).encode(),
            ))
        };
        let (a, b) = (
            bus.join_run("r", Feed::Frames, |_| true),
            bus.join_run("r", Feed::Frames, |_| true),
        );
        let (fa, la) = a.recent(5, 5, Some(0), render).expect("kept");
        let (fb, lb) = b.recent(5, 5, Some(0), render).expect("kept");
        assert_eq!((la, lb, renders.load(Ordering::SeqCst)), (7, 7, 1));
        let (fa, fb) = (fa.unwrap(), fb.unwrap());
        assert_eq!(fa.as_str().as_ptr(), fb.as_str().as_ptr(), "one encoding");
        let v: Value = serde_json::from_str(fa.as_str()).unwrap();
        assert_eq!(
            (v["seq_from"].as_u64(), v["seq_to"].as_u64()),
            (Some(6), Some(7))
        );
        let seqs: Vec<_> = v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_u64())
            .collect();
        assert_eq!(seqs, [Some(6), Some(7)]);
        // Another detail, or a replay of its own, is rendered apart.
        assert!(a.recent(5, 5, Some(1), render).is_some());
        assert!(a.recent(5, 5, None, render).is_some());
        assert_eq!(renders.load(Ordering::SeqCst), 3);
        // Before what is kept, or not reaching the snapshot's end: the store serves it.
        assert!(a.recent(3, 3, Some(0), render).is_none());
        assert!(a.recent(5, 9, Some(0), render).is_none());
        // A cursor at the end: nothing to send, and nothing missed.
        let (f, last) = a.recent(7, 7, Some(0), |_| None).unwrap();
        assert_eq!((f, last), (None, 7));
    }

    #[tokio::test]
    async fn a_frame_waits_for_the_writes_of_relaying_subscribers_only() {
        // A frame interval far longer than `next` waits: the second frame comes in
        // time only if it is cut when the relaying subscriber wrote the first, not
        // held for the one still sending its snapshot.
        let slow = Cadence {
            frame: Duration::from_secs(600),
            summary: Duration::from_secs(600),
        };
        let bus = Bus::new(BusConfig {
            run: slow,
            ..fast()
        });
        let mut live = bus.join_run("r", Feed::Frames, |_| true);
        live.relaying();
        let mut joining = bus.join_run("r", Feed::Frames, |_| true);
        bus.publish([task("r", 1, "a", "queued")]);
        let f1 = next(&mut live).await;
        live.written(&f1);
        bus.publish([task("r", 2, "a", "running")]);
        let f2 = next(&mut live).await;
        assert_eq!(f2.seq_to, Some(2));
        // The joiner takes both from the channel once its snapshot is sent.
        assert_eq!(next(&mut joining).await.seq_to, Some(1));
        assert_eq!(next(&mut joining).await.seq_to, Some(2));
    }

    #[tokio::test]
    async fn the_fleet_replays_from_the_ring_and_numbers_its_events() {
        let bus = Bus::new(fast());
        bus.publish([(None, None, testing::queues(vec![]))]);
        let (mut sub, replay) = bus.join_fleet(Some(0));
        assert_eq!(replay.unwrap().len(), 1);
        bus.publish([(None, None, testing::worker("w"))]);
        let f = next(&mut sub).await;
        assert_eq!((f.seq_from, f.seq_to), (Some(2), Some(2)));
        assert!(
            bus.join_fleet(Some(9)).1.is_none(),
            "a sequence the bus never had"
        );
    }
}
