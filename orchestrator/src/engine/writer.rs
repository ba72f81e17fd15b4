//! Group commit: store first, then Redis, then the bus, then the callers.

use crate::api_types::LiveEvent;
use crate::live::Bus;
use crate::queue::{AttemptKey, Outgoing, RedisQueue};
use crate::store::{Generation, RunRow, Store, StoreError, WriteBatch};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// An answer owed to a caller once its writes are stored.
pub(super) type Reply = (super::RunReply, RunRow);

/// Everything one batch of the core loop decided.
#[derive(Default)]
pub(super) struct Flush {
    pub batch: WriteBatch,
    pub outgoing: Outgoing,
    /// `(run_id, run_seq, event)` for the bus, in order.
    pub live: Vec<(Option<Arc<str>>, Option<u64>, LiveEvent)>,
    pub replies: Vec<Reply>,
}

impl Flush {
    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
            && self.outgoing.is_empty()
            && self.live.is_empty()
            && self.replies.is_empty()
    }

    /// Folds later flushes into this one, in order.
    fn merge_all(&mut self, later: Vec<Flush>) {
        let mut batches = Vec::with_capacity(later.len());
        for f in later {
            batches.push(f.batch);
            self.outgoing.merge(f.outgoing);
            self.live.extend(f.live);
            self.replies.extend(f.replies);
        }
        self.batch.merge_all(batches);
    }
}

/// Most flushes merged into one commit; bounds the size of one transaction.
const MAX_MERGE: usize = 32;

/// Where one task message landed: its attempt, queue, and the entry id or why Redis
/// refused the message.
pub(super) struct Landed {
    pub attempt: AttemptKey,
    pub queue: String,
    pub entry: Result<String, String>,
}

/// Where each task message of one flush landed.
pub(super) type Enqueued = Vec<Landed>;

/// What the writer is stuck on, if anything: shown by `/readyz` and `/api/v1/health`.
#[derive(Debug, Clone, Default)]
pub struct WriterHealth {
    inner: Arc<parking_lot::Mutex<Option<Stuck>>>,
    /// Set when this orchestrator no longer leads: nothing more may be written.
    abandoned: Arc<std::sync::atomic::AtomicBool>,
}

/// A write that keeps failing.
#[derive(Debug, Clone)]
pub struct Stuck {
    /// `store` or `redis`.
    pub target: &'static str,
    pub error: String,
    pub since_ms: i64,
}

impl WriterHealth {
    /// The write that keeps failing, if one does.
    pub fn stuck(&self) -> Option<Stuck> {
        self.inner.lock().clone()
    }

    /// Stops every write from now on: another orchestrator leads, and whatever this one
    /// still holds in memory is not to be stored, pushed or acknowledged.
    pub fn abandon(&self) {
        self.abandoned
            .store(true, std::sync::atomic::Ordering::Release);
    }

    fn abandoned(&self) -> bool {
        self.abandoned.load(std::sync::atomic::Ordering::Acquire)
    }

    fn failing(&self, target: &'static str, error: String) {
        let mut g = self.inner.lock();
        let since_ms = g.as_ref().map_or_else(super::now_ms, |s| s.since_ms);
        *g = Some(Stuck {
            target,
            error,
            since_ms,
        });
        metrics::gauge!("apex_writer_stuck", "target" => target).set(1.0);
    }

    fn recovered(&self, target: &'static str) {
        let mut g = self.inner.lock();
        if g.as_ref().is_some_and(|s| s.target == target) {
            *g = None;
            metrics::gauge!("apex_writer_stuck", "target" => target).set(0.0);
        }
    }
}

pub(super) async fn run(
    store: Arc<dyn Store>,
    queue: Arc<RedisQueue>,
    bus: Bus,
    mut rx: mpsc::Receiver<Flush>,
    // Unbounded: the core may be waiting to hand this writer a flush, so a bounded
    // channel back to it could deadlock.
    enqueued: mpsc::UnboundedSender<Enqueued>,
    health: WriterHealth,
    generation: Generation,
) {
    // The bus classifies and encodes every event, tens of ms for a big commit's. On a
    // task of its own that overlaps the Redis send, instead of holding up the workers
    // (published before the send) or the watchers (after it). Bounded: a bus that falls
    // behind slows the commits rather than piling events up.
    let (to_bus, for_bus) = mpsc::channel(64);
    let publisher = tokio::spawn(publish_all(bus, for_bus));
    while let Some(mut flush) = rx.recv().await {
        let mut more = Vec::new();
        while more.len() + 1 < MAX_MERGE {
            match rx.try_recv() {
                Ok(f) => more.push(f),
                Err(_) => break,
            }
        }
        flush.merge_all(more);
        let started = std::time::Instant::now();
        // The store is the source of truth: nothing reaches Redis or a caller before it
        // is committed, and a commit is retried until it lands rather than dropped,
        // unless another orchestrator took over: then nothing more is written at all.
        if health.abandoned() {
            continue;
        }
        let fenced = retry(&health, "store", || async {
            match store.apply(&flush.batch).await {
                Err(StoreError::Fenced { ours, current }) => Ok(Some((ours, current))),
                other => other.map(|()| None),
            }
        })
        .await;
        if let Some((ours, current)) = fenced {
            tracing::error!(
                ours,
                current,
                "another orchestrator took over: this one writes nothing more"
            );
            metrics::counter!("apex_fenced_writes_total").increment(1);
            health.abandon();
            continue;
        }
        // The store's part of `apex_commit_seconds` (the rest is mostly the Redis send):
        // says which of the two a commit cycle waits on.
        metrics::histogram!("apex_store_commit_seconds").record(started.elapsed().as_secs_f64());
        // At once, and before the bus: a cached read must not outlive the commit, and
        // what a watcher is told a read must show.
        generation.advance();
        // Live events say when they became durable, so clients can measure delivery:
        // stamped as the commit returns and handed to the bus at once, as what watchers
        // see is the store's state; the Redis send below does not change it.
        let mut live = std::mem::take(&mut flush.live);
        if !live.is_empty() {
            let stored_at_ms = super::now_ms();
            for (_, _, event) in &mut live {
                event.stamp(stored_at_ms);
            }
            let _ = to_bus.send((stored_at_ms, live)).await;
        }
        // Traces are built from what is now stored (a no-op unless tracing is on).
        crate::telemetry::observe(&flush.batch, &flush.outgoing);
        // Stored: the rows are not needed for what follows, and a big batch (a new run's
        // 100,000 task rows and events, ~60 MB) should not be held through the Redis send.
        drop(std::mem::take(&mut flush.batch));
        // Only a failed connection is retried; a message Redis refuses comes back as a
        // refusal, which fails its task instead of stalling every run.
        let ids = retry(&health, "redis", || queue.send(&flush.outgoing)).await;
        if !ids.is_empty() {
            let landed = flush
                .outgoing
                .tasks
                .into_iter()
                .zip(ids)
                .map(|(t, entry)| Landed {
                    attempt: t.attempt,
                    queue: t.queue,
                    entry,
                })
                .collect();
            let _ = enqueued.send(landed);
        }
        metrics::histogram!("apex_commit_seconds").record(started.elapsed().as_secs_f64());
        for (reply, run) in flush.replies {
            let _ = reply.send(Ok(run));
        }
    }
    // Every stored event reaches the bus before the engine counts as stopped.
    drop(to_bus);
    let _ = publisher.await;
}

/// Stored events for the bus, in commit order, each stamped with when it became durable
/// (the stamp, ms since the epoch, also first).
type Stamped = (i64, Vec<(Option<Arc<str>>, Option<u64>, LiveEvent)>);

/// Publishes what the writer stored, in the order it was stored.
async fn publish_all(bus: Bus, mut stored: mpsc::Receiver<Stamped>) {
    while let Some((stored_at_ms, live)) = stored.recv().await {
        bus.publish(live);
        // The first hop of a live event's delivery (stored -> in its stream, encoded),
        // beside `apex_live_frame_cut_seconds` and `apex_ws_frame_written_seconds`:
        // together they say which hop a slow delivery waited in.
        let ms = (super::now_ms() - stored_at_ms).max(0);
        metrics::histogram!("apex_live_published_seconds").record(ms as f64 / 1000.0);
    }
}

/// Runs `op` until it succeeds, backing off, and says in `health` while it fails.
async fn retry<F, Fut, T, E>(health: &WriterHealth, what: &'static str, mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let mut attempt = 0u32;
    loop {
        match op().await {
            Ok(value) => {
                if attempt > 0 {
                    health.recovered(what);
                    tracing::info!(
                        what,
                        attempts = attempt + 1,
                        "write succeeded after retrying"
                    );
                }
                return value;
            }
            Err(e) => {
                attempt += 1;
                health.failing(what, e.to_string());
                metrics::counter!("apex_write_retries_total", "target" => what.to_owned())
                    .increment(1);
                if attempt == 1 || attempt.is_multiple_of(20) {
                    tracing::warn!(what, error = %e, attempt, "write failed; retrying");
                }
                tokio::time::sleep(Duration::from_millis(
                    (50 * 2u64.pow(attempt.min(5))).min(2_000),
                ))
                .await;
            }
        }
    }
}
