//! The event bus: what the engine has stored, published live to WebSocket clients.
//!
//! Each message gets a bus sequence number. The last few thousand are kept in a ring so a
//! client that reconnects with `since` gets exactly what it missed; older than that, it
//! is told to resync. Publishing never waits for subscribers: `broadcast` drops what a
//! slow subscriber has not read, and that subscriber learns it lagged.

use parking_lot::Mutex;
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::broadcast;

/// One published message.
#[derive(Debug, Clone)]
pub struct BusEvent {
    /// Position in the bus sequence.
    pub seq: u64,
    /// The run it is about, if any.
    pub run_id: Option<Arc<str>>,
    /// The run's own event sequence number, for stored events.
    pub run_seq: Option<u64>,
    /// The event as the API shows it (see docs/API.md); fleet events (no run) also
    /// carry the bus `seq`, so a client can resume after them.
    pub body: Value,
    /// `body` as JSON text, encoded once however many clients receive it.
    pub json: String,
    /// Events with the same key supersede each other within a frame (the latest
    /// summary of a run, a worker, the queues, a task's progress); `None` for
    /// transitions and logs, which are all delivered.
    pub supersedes: Option<String>,
}

/// What a later event of the same kind makes redundant, if anything.
fn supersede_key(body: &Value) -> Option<String> {
    match body["kind"].as_str()? {
        "run_updated" => Some(format!("run:{}", body["run"]["id"])),
        "worker" => Some(format!("worker:{}", body["worker"]["id"])),
        "queues" => Some("queues".into()),
        "progress" => Some(format!("progress:{}:{}", body["run_id"], body["task_id"])),
        _ => None,
    }
}

/// Capacity of the replay ring and of each subscriber's buffer.
const RING: usize = 65_536;

/// A cheap-to-clone handle on the bus.
#[derive(Clone)]
pub struct Bus {
    tx: broadcast::Sender<Arc<BusEvent>>,
    /// Recent events for replay; locked briefly on publish and on subscribe.
    ring: Arc<Mutex<VecDeque<Arc<BusEvent>>>>,
    seq: Arc<AtomicU64>,
}

impl Default for Bus {
    fn default() -> Self {
        Self::new()
    }
}

impl Bus {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(RING);
        Self {
            tx,
            ring: Arc::new(Mutex::new(VecDeque::with_capacity(RING))),
            seq: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Publishes events in order: `(run_id, run_seq, body)`.
    pub fn publish(
        &self,
        events: impl IntoIterator<Item = (Option<Arc<str>>, Option<u64>, Value)>,
    ) {
        let mut ring = self.ring.lock();
        for (run_id, run_seq, mut body) in events {
            let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
            if run_id.is_none() {
                if let Value::Object(m) = &mut body {
                    m.insert("seq".into(), seq.into());
                }
            }
            let json = body.to_string();
            let supersedes = supersede_key(&body);
            let ev = Arc::new(BusEvent {
                seq,
                run_id,
                run_seq,
                body,
                json,
                supersedes,
            });
            if ring.len() == RING {
                ring.pop_front();
            }
            ring.push_back(Arc::clone(&ev));
            // No subscribers is fine.
            let _ = self.tx.send(ev);
        }
    }

    /// The last bus sequence number used.
    pub fn last_seq(&self) -> u64 {
        self.seq.load(Ordering::Relaxed)
    }

    /// Subscribes, and returns the retained events after `since` when all of them are
    /// still retained (`None` when some are gone).
    pub fn subscribe_since(
        &self,
        since: Option<u64>,
    ) -> (
        broadcast::Receiver<Arc<BusEvent>>,
        Option<Vec<Arc<BusEvent>>>,
    ) {
        // Holding the ring lock while subscribing means nothing published in between is
        // missed or seen twice.
        let ring = self.ring.lock();
        let rx = self.tx.subscribe();
        let replay = since.and_then(|since| {
            let oldest = ring.front().map_or(self.last_seq() + 1, |e| e.seq);
            (since + 1 >= oldest).then(|| ring.iter().filter(|e| e.seq > since).cloned().collect())
        });
        (rx, replay)
    }
}
