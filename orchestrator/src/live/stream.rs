//! A stream: one run's events (or the fleet's), turned into frames by one task, and
//! shared by every subscriber through `broadcast` channels. A frame is cut once every
//! subscriber has written the last one, at most a frame interval after it, and holds
//! at most `FRAME_EVENTS` events.
//!
//! ```text
//! publish ──push──▶ pending ──(one task, when the last frame is written)──▶ coalesce, Frame ──▶ frames ──▶ clients
//!                           └──(every summary interval)──▶ summaries ──▶ clients
//! ```
//!
//! The cost of a frame is paid once per stream, not per client: a client only clones an
//! `Arc` and writes the shared bytes. A client that falls more than the channel's
//! capacity behind is told so by `broadcast` (it lagged) and cut off; nobody waits for it.
//!
//! A run's stream also holds the text its running attempts streamed so far
//! ([`Answers`]), as of the last frame sent: joining takes a copy of it and a receiver
//! under the same lock the frame task sends under, so a joining client gets the text so
//! far and then exactly the deltas that follow, none twice.
//!
//! The frame task runs only while someone subscribes; without subscribers, publishing
//! updates the answers directly.

use super::answers::Answers;
use super::event::BusEvent;
use super::frame::{frames_of, Frame};
use super::recent::Recent;
use super::shared_read::SharedRead;
use axum::extract::ws::Utf8Bytes;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::{broadcast, Notify};
use tokio::time::Instant;

/// What a subscriber takes from a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// Every frame: all events, coalesced (`detail=tasks`, or a task filter applied by
    /// the subscriber).
    Frames,
    /// Summary frames only: the run's summary, its transitions and its tasks' failures,
    /// at most one per summary interval (`detail=summary`).
    Summaries,
}

/// How often a stream sends.
#[derive(Debug, Clone, Copy)]
pub struct Cadence {
    /// Shortest gap between two frames; what arrives within it shares a frame.
    pub frame: Duration,
    /// Shortest gap between two summary frames.
    pub summary: Duration,
}

/// Frames a subscriber may fall behind before it is cut off (told to resync): a few
/// seconds at full rate. Frames are shared, so this bounds memory per stream, not per
/// client.
const FRAMES_BUFFERED: usize = 512;
const SUMMARIES_BUFFERED: usize = 64;

/// The streams of runs, by run id: only runs someone watches or whose attempts stream
/// text have one.
pub(super) type Streams = Mutex<HashMap<Arc<str>, Arc<Stream>>>;

/// One stream.
#[derive(Debug)]
pub struct Stream {
    /// The run it follows; `None` for the fleet.
    run_id: Option<Arc<str>>,
    cadence: Cadence,
    /// Held for a push, a join, or while the frame task takes a batch or sends one;
    /// never across an `.await`. Sending frames under it is what makes joining exact.
    state: Mutex<State>,
    /// Wakes the frame task: something was pushed, or a subscriber left.
    wake: Notify,
    /// Wakes the frame task: every subscriber wrote the last frame.
    written: Notify,
    frames: broadcast::Sender<Arc<Frame>>,
    /// Frame subscribers relaying frames to their sockets: the writes a frame waits for
    /// before the next is cut. One still reading or sending its snapshot takes the
    /// frames later, from the channel, and is not waited for.
    relaying: AtomicUsize,
    summaries: broadcast::Sender<Arc<Frame>>,
    /// The registry a run's stream removes itself from once nobody needs it.
    registry: Weak<Streams>,
    /// The last full snapshot built for a subscriber, reused by those that join soon
    /// after (fifty dashboards opening a big run read it from the store once).
    snapshot: SharedRead<Snapshot>,
    /// The run's last summary read, shared by every subscriber that joined before its
    /// reading began (a thousand summary watchers connecting at once read the run a
    /// few times, not a thousand).
    summary: SharedRead<Snapshot>,
    /// The first page of the last replay read from the store, shared by every joiner
    /// resuming from the same cursor that joined before its reading began: fifty
    /// dashboards joining before the stream has framed anything would otherwise take
    /// fifty of the store's few connections for one identical read, and under load
    /// wait out the pool's timeout. Kept until the next such read: at most a replay
    /// page (5,000 events), less than what `recent` may hold.
    stored: SharedRead<StoredPage>,
    /// Replays served from [`Recent`], encoded once for every joiner that asks for the
    /// same one (same cursor, same end, same detail).
    replays: Mutex<VecDeque<(ReplayKey, Option<Utf8Bytes>)>>,
}

/// Replays kept encoded: joiners of one moment ask for one or two (the snapshot's
/// `seq`, a common `since`), so a handful is plenty.
const REPLAYS_KEPT: usize = 4;

/// Which replay: from `since` to `last`, for the detail `view` names (one of the
/// caller's; callers whose replay is their own, such as a task filter, do not share).
type ReplayKey = (u64, u64, u8);

/// A run's snapshot frame, encoded, with the sequence numbers around its reading.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The run's last event before the snapshot was read: the snapshot's `seq`.
    pub seq: u64,
    /// The run's last event after it was read. Events in `seq + 1..=through` may or may
    /// not show in the snapshot: a client gets them as one coalesced frame, so no task
    /// is seen moving backwards.
    pub through: u64,
    pub bytes: Utf8Bytes,
    /// For a summary snapshot: an `events` frame carrying only its `run`, for clients
    /// that resume with `since` (built once, with the snapshot).
    pub run_only: Option<Utf8Bytes>,
}

/// One page of a run's stored events, read for a replay, in order.
#[derive(Debug, Clone)]
pub struct StoredPage {
    /// The cursor it was read after.
    pub since: u64,
    pub events: Arc<[Arc<BusEvent>]>,
    /// The last sequence number in it; `since` when it is empty.
    pub last: u64,
    /// It holds as many events as asked for: more may follow.
    pub full: bool,
}

/// Moves the process-wide `apex_live_recent_bytes` gauge by one stream's change, so it
/// shows what every stream keeps together rather than the last stream to set it.
fn recent_bytes_changed(before: usize, after: usize) {
    let gauge = metrics::gauge!("apex_live_recent_bytes");
    if after >= before {
        gauge.increment((after - before) as f64);
    } else {
        gauge.decrement((before - after) as f64);
    }
}

impl Drop for State {
    fn drop(&mut self) {
        recent_bytes_changed(self.recent.bytes(), 0);
    }
}

#[derive(Debug)]
struct State {
    /// Published since the last frame, while the frame task runs.
    pending: Vec<Arc<BusEvent>>,
    /// The run's latest summary since the last frame.
    run: Option<Arc<BusEvent>>,
    /// The text each running attempt streamed, as of the last frame sent.
    answers: Answers,
    /// The stored events of the last frames, for joiners whose cursor they cover.
    recent: Recent,
    /// Whether the frame task runs.
    ticking: bool,
    /// Subscribers of each feed.
    framed: usize,
    summarised: usize,
}

/// A subscriber's hold on a stream; leaving is dropping it.
#[derive(Debug)]
pub struct Subscription {
    stream: Arc<Stream>,
    feed: Feed,
    pub frames: broadcast::Receiver<Arc<Frame>>,
    /// The run's answers as of the last frame before `frames` starts (empty on the
    /// fleet's stream and for summaries), as `answer` events.
    pub answers: Vec<crate::api_types::LiveEvent>,
    /// When it joined: a store read begun since sees everything the frames will not.
    joined: Instant,
    /// Since when it relays frames to its socket ([`Subscription::relaying`]).
    relaying: Option<std::time::Instant>,
}

impl Stream {
    pub(super) fn new(
        run_id: Option<Arc<str>>,
        cadence: Cadence,
        answer_cap: usize,
        recent: (usize, usize),
        registry: Weak<Streams>,
    ) -> Arc<Self> {
        Arc::new(Self {
            run_id,
            cadence,
            state: Mutex::new(State {
                pending: Vec::new(),
                run: None,
                answers: Answers::new(answer_cap),
                recent: Recent::new(recent.0, recent.1),
                ticking: false,
                framed: 0,
                summarised: 0,
            }),
            wake: Notify::new(),
            written: Notify::new(),
            frames: broadcast::channel(FRAMES_BUFFERED).0,
            relaying: AtomicUsize::new(0),
            summaries: broadcast::channel(SUMMARIES_BUFFERED).0,
            registry,
            snapshot: SharedRead::default(),
            summary: SharedRead::default(),
            stored: SharedRead::default(),
            replays: Mutex::new(VecDeque::new()),
        })
    }

    /// Publishes events of this stream, in order.
    pub(super) fn push(&self, events: impl IntoIterator<Item = Arc<BusEvent>>) {
        let mut s = self.state.lock();
        if s.ticking {
            s.pending.extend(events);
            drop(s);
            self.wake.notify_one();
        } else {
            // Nobody is watching: only the answers need the events, and the recent
            // ones no longer run up to the latest.
            let before = s.recent.bytes();
            s.recent.forget();
            recent_bytes_changed(before, 0);
            for e in events {
                s.answers.apply(&e);
            }
        }
    }

    /// Publishes the run's latest summary.
    pub(super) fn push_summary(&self, summary: Arc<BusEvent>) {
        let mut s = self.state.lock();
        if s.ticking {
            s.run = Some(summary);
            drop(s);
            self.wake.notify_one();
        }
    }

    /// Whether nobody needs this stream: no subscriber, no frame task, no answer.
    pub(super) fn idle(&self) -> bool {
        let s = self.state.lock();
        !s.ticking && s.framed + s.summarised == 0 && s.answers.is_empty()
    }

    /// Subscribes to `feed`, starting the frame task if it is not running. `wanted`
    /// picks the tasks whose answers the subscriber gets.
    pub(super) fn join(
        self: &Arc<Self>,
        feed: Feed,
        wanted: impl Fn(&str) -> bool,
    ) -> Subscription {
        let mut s = self.state.lock();
        match feed {
            Feed::Frames => s.framed += 1,
            Feed::Summaries => s.summarised += 1,
        }
        if !s.ticking {
            s.ticking = true;
            tokio::spawn(Arc::clone(self).tick());
        }
        let (frames, answers) = match (feed, &self.run_id) {
            (Feed::Frames, Some(run)) => (self.frames.subscribe(), s.answers.events(run, wanted)),
            (Feed::Frames, None) => (self.frames.subscribe(), Vec::new()),
            (Feed::Summaries, _) => (self.summaries.subscribe(), Vec::new()),
        };
        drop(s);
        // A summary subscriber may shorten the wait of a frame task that was only
        // framing for it; wake it so it recomputes.
        self.wake.notify_one();
        Subscription {
            stream: Arc::clone(self),
            feed,
            frames,
            answers,
            joined: Instant::now(),
            relaying: None,
        }
    }

    /// Makes frames until nobody subscribes and nothing is pending.
    ///
    /// A frame is cut as soon as every subscriber has written the last one to its
    /// socket, and at the latest one frame interval after it: a quiet stream sends each
    /// commit's events at once, and a busy one gathers what arrives while its clients
    /// are still writing into the next frame, without a fixed wait on top.
    async fn tick(self: Arc<Self>) {
        let mut summary = Summary::default();
        let mut next_frame = Instant::now();
        let mut next_summary = Instant::now();
        // The last frame sent to frame subscribers (none while only summaries are).
        let mut last: Option<Arc<Frame>> = None;
        loop {
            let summary_due = (!summary.is_empty()).then_some(next_summary);
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = sleep_until(summary_due) => {}
            }
            self.window(last.as_deref(), next_frame).await;
            let (batch, run, framed, summarised) = {
                let mut s = self.state.lock();
                if s.pending.is_empty() && s.run.is_none() && s.framed + s.summarised == 0 {
                    drop(s);
                    if self.stop() {
                        return;
                    }
                    continue;
                }
                (
                    std::mem::take(&mut s.pending),
                    s.run.take(),
                    s.framed,
                    s.summarised,
                )
            };
            let now = Instant::now();
            // Only summaries wanted: gather a summary interval's worth before framing.
            next_frame = now
                + if framed > 0 {
                    self.cadence.frame
                } else {
                    self.cadence.summary
                };
            let frames = frames_of(batch, run);
            if summarised > 0 {
                for f in &frames {
                    summary.add(f);
                }
            }
            let summary_frame = (summarised > 0 && !summary.is_empty() && now >= next_summary)
                .then(|| {
                    next_summary = now + self.cadence.summary;
                    summary.take()
                });
            if summarised == 0 {
                summary = Summary::default();
            }
            if framed == 0 {
                last = None;
            }
            let mut s = self.state.lock();
            for f in frames {
                for e in &f.events {
                    s.answers.apply(e);
                }
                if let (Some(from), Some(to)) = (f.seq_from, f.seq_to) {
                    let before = s.recent.bytes();
                    s.recent.keep(from, to, &f.events);
                    recent_bytes_changed(before, s.recent.bytes());
                }
                if framed > 0 && !f.is_empty() {
                    metrics::counter!("apex_live_frames_total").increment(1);
                    if let Some(age) = f.age_ms() {
                        metrics::histogram!("apex_live_frame_cut_seconds")
                            .record(age as f64 / 1000.0);
                    }
                    let f = Arc::new(f);
                    // Counted before sending: a subscriber starting to relay in between
                    // makes the count reach zero early (a frame cut a little sooner), one
                    // leaving keeps it from zero (the frame interval caps the wait).
                    f.expect_writes(self.relaying.load(Ordering::Acquire));
                    // Only fails without receivers, which is fine.
                    let _ = self.frames.send(Arc::clone(&f));
                    last = Some(f);
                }
            }
            if let Some(f) = summary_frame {
                let _ = self.summaries.send(Arc::new(f));
            }
        }
    }

    /// Waits out the coalescing window: until every subscriber has written `last` (what
    /// arrives meanwhile shares the next frame), or until `until`. Without a last frame
    /// (only summaries are wanted) it is `until` alone.
    async fn window(&self, last: Option<&Frame>, until: Instant) {
        let Some(last) = last else {
            return tokio::time::sleep_until(until).await;
        };
        let cap = tokio::time::sleep_until(until);
        tokio::pin!(cap);
        // A permit left by an earlier frame's last writer only costs one more check.
        while !last.all_written() {
            tokio::select! {
                _ = &mut cap => return,
                _ = self.written.notified() => {}
            }
        }
    }

    /// Ends the frame task if nobody subscribes and nothing is pending, removing a
    /// run's stream from the registry when it holds no answer either. Answers whether
    /// the task ended.
    fn stop(&self) -> bool {
        let registry = self.registry.upgrade();
        // The registry first, as publishing and joining lock it: nobody can find this
        // stream between the check and the removal.
        let mut streams = registry.as_ref().map(|r| r.lock());
        let mut s = self.state.lock();
        if !s.pending.is_empty() || s.run.is_some() || s.framed + s.summarised > 0 {
            return false;
        }
        s.ticking = false;
        if let (Some(streams), Some(run)) = (streams.as_mut(), &self.run_id) {
            if s.answers.is_empty() {
                streams.remove(run);
            }
        }
        true
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Subscription {
    /// Says the subscriber now relays each frame as it comes (its snapshot and replay
    /// are sent): from here on the stream waits for its writes before cutting the next
    /// frame. Answers since when, which [`Frame::cut_at`] is compared with.
    pub fn relaying(&mut self) -> std::time::Instant {
        if let Some(at) = self.relaying {
            return at;
        }
        let at = std::time::Instant::now();
        if self.feed == Feed::Frames {
            self.stream.relaying.fetch_add(1, Ordering::AcqRel);
        }
        self.relaying = Some(at);
        at
    }

    /// Says this subscriber is done with `frame`: written to its socket, or holding
    /// nothing for it. The last one lets the stream cut the next frame. Frames cut
    /// before it relayed (caught up from the channel) were not waiting for it.
    pub fn written(&self, frame: &Frame) {
        let counted = self.relaying.is_some_and(|at| frame.cut_at >= at);
        if counted && frame.written() {
            self.stream.written.notify_one();
        }
    }

    /// The stream's last full snapshot if its reading began less than `reuse` ago, else
    /// a new one from `build`, kept for the next subscribers. Whatever happened after a
    /// reused snapshot was read is not in it: the caller replays the store from its
    /// `seq`.
    pub async fn snapshot<E, F, Fut>(&self, reuse: Duration, build: F) -> Result<Snapshot, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Snapshot, E>>,
    {
        let good = |began: Instant, _: &Snapshot| began.elapsed() < reuse;
        self.stream.snapshot.get(good, build).await
    }

    /// The run's summary as read after this subscription joined: shared with every
    /// subscriber that joined before the same read began, and complete without a
    /// replay (what happened after the read comes in the frames).
    pub async fn summary<E, F, Fut>(&self, build: F) -> Result<Snapshot, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Snapshot, E>>,
    {
        let joined = self.joined;
        self.stream
            .summary
            .get(|began, _| began >= joined, build)
            .await
    }

    /// The first page of the stored events after `since`: one read after this
    /// subscription joined (so it holds every event the frames will not bring), shared
    /// with the joiners that ask for the same cursor meanwhile. A page that ends before
    /// `through` and is not full is not good for a caller whose snapshot was read later.
    pub async fn stored<E, F, Fut>(
        &self,
        since: u64,
        through: u64,
        read: F,
    ) -> Result<StoredPage, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<StoredPage, E>>,
    {
        let joined = self.joined;
        let good = |began: Instant, page: &StoredPage| {
            began >= joined && page.since == since && (page.full || page.last >= through)
        };
        self.stream.stored.get(good, read).await
    }
}

impl Subscription {
    /// The stored events after `since` as one encoded replay, served from the stream's
    /// recent events when they cover `since` and reach `through`, with the last
    /// sequence number it accounts for; `None` when the store must serve it.
    ///
    /// `render` turns the events (coalescing them is its job) into the frame to send,
    /// or `None` when the client is owed nothing of them. With a `detail` tag the
    /// rendering is shared: every joiner asking for the same replay gets the same
    /// bytes, rendered once (the lock is held while rendering, so joiners arriving
    /// together wait for the first one's rendering instead of repeating it).
    pub fn recent<R>(
        &self,
        since: u64,
        through: u64,
        detail: Option<u8>,
        render: R,
    ) -> Option<(Option<Utf8Bytes>, u64)>
    where
        R: FnOnce(Vec<Arc<BusEvent>>) -> Option<Utf8Bytes>,
    {
        let fetch = || {
            let s = self.stream.state.lock();
            s.recent.after(since).filter(|(_, last)| *last >= through)
        };
        let Some(detail) = detail else {
            let (events, last) = fetch()?;
            return Some((render(events), last));
        };
        let mut replays = self.stream.replays.lock();
        // Where a replay from the recent events would end now: the key needs it.
        let last = self.stream.state.lock().recent.end_after(since)?;
        if last < through {
            return None;
        }
        let key = (since, last, detail);
        if let Some((_, bytes)) = replays.iter().find(|(k, _)| *k == key) {
            metrics::counter!("apex_live_replays_shared_total").increment(1);
            return Some((bytes.clone(), last));
        }
        let (events, last) = fetch()?;
        let bytes = render(events);
        if replays.len() == REPLAYS_KEPT {
            replays.pop_front();
        }
        replays.push_back(((since, last, detail), bytes.clone()));
        Some((bytes, last))
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if self.feed == Feed::Frames && self.relaying.is_some() {
            self.stream.relaying.fetch_sub(1, Ordering::AcqRel);
        }
        let mut s = self.stream.state.lock();
        match self.feed {
            Feed::Frames => s.framed -= 1,
            Feed::Summaries => s.summarised -= 1,
        }
        drop(s);
        self.stream.wake.notify_one();
    }
}

/// What summary subscribers are owed since their last frame.
#[derive(Debug, Default)]
struct Summary {
    seq_from: Option<u64>,
    seq_to: Option<u64>,
    events: Vec<Arc<BusEvent>>,
    run: Option<Arc<BusEvent>>,
}

impl Summary {
    fn is_empty(&self) -> bool {
        self.seq_to.is_none() && self.events.is_empty() && self.run.is_none()
    }

    fn add(&mut self, f: &Frame) {
        self.seq_from = self.seq_from.or(f.seq_from);
        self.seq_to = f.seq_to.or(self.seq_to);
        self.events
            .extend(f.events.iter().filter(|e| e.summarised()).cloned());
        if f.run.is_some() {
            self.run = f.run.clone();
        }
    }

    fn take(&mut self) -> Frame {
        let s = std::mem::take(self);
        Frame::new(s.seq_from, s.seq_to, s.events, s.run)
    }
}
