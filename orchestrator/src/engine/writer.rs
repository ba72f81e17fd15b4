//! Group commit: store first, then Redis, then the bus, then the callers.

use crate::bus::Bus;
use crate::queue::{Outgoing, RedisQueue};
use crate::store::{RunRow, Store, WriteBatch};
use serde_json::Value;
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
    /// `(run_id, run_seq, body)` for the bus, in order.
    pub live: Vec<(Option<Arc<str>>, Option<u64>, Value)>,
    pub replies: Vec<Reply>,
}

impl Flush {
    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
            && self.outgoing.is_empty()
            && self.live.is_empty()
            && self.replies.is_empty()
    }

    fn merge(&mut self, later: Flush) {
        self.batch.merge(later.batch);
        self.outgoing.merge(later.outgoing);
        self.live.extend(later.live);
        self.replies.extend(later.replies);
    }
}

/// Most flushes merged into one commit; bounds the size of one transaction.
const MAX_MERGE: usize = 32;

/// Where each task message landed: `(run, task, attempt)`, queue, entry id.
pub(super) type Enqueued = Vec<((Arc<str>, u32, u32), String, String)>;

pub(super) async fn run(
    store: Arc<dyn Store>,
    queue: Arc<RedisQueue>,
    bus: Bus,
    mut rx: mpsc::Receiver<Flush>,
    // Unbounded: the core may be waiting to hand this writer a flush, so a bounded
    // channel back to it could deadlock.
    enqueued: mpsc::UnboundedSender<Enqueued>,
) {
    while let Some(mut flush) = rx.recv().await {
        for _ in 1..MAX_MERGE {
            match rx.try_recv() {
                Ok(more) => flush.merge(more),
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        // The store is the source of truth: nothing reaches Redis or a caller before it
        // is committed, and a commit is retried until it lands rather than dropped.
        retry("store", || store.apply(&flush.batch)).await;
        let ids = retry("redis", || queue.send(&flush.outgoing)).await;
        if !ids.is_empty() {
            let landed = flush
                .outgoing
                .tasks
                .into_iter()
                .zip(ids)
                .map(|(t, id)| (t.attempt, t.queue, id))
                .collect();
            let _ = enqueued.send(landed);
        }
        metrics::histogram!("apex_commit_seconds").record(started.elapsed().as_secs_f64());
        // Live events say when they became durable, so clients can measure delivery.
        let stored_at_ms = super::now_ms();
        let mut live = flush.live;
        for (_, _, body) in &mut live {
            if let Value::Object(m) = body {
                m.insert("stored_at_ms".into(), stored_at_ms.into());
            }
        }
        bus.publish(live);
        for (reply, run) in flush.replies {
            let _ = reply.send(Ok(run));
        }
    }
}

async fn retry<F, Fut, T, E>(what: &str, mut op: F) -> T
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
