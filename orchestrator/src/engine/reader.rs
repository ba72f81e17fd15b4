//! Reads the results stream and hands parsed batches to the core loop.

use super::Input;
use crate::queue::ResultsReader;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use worker_protocol::{WorkerMessage, PROTOCOL_VERSION};

fn parse(body: Option<&[u8]>) -> Result<WorkerMessage, String> {
    let body = body.ok_or_else(|| "entry has no `m` field".to_owned())?;
    let msg: WorkerMessage =
        serde_json::from_slice(body).map_err(|e| format!("invalid message: {e}"))?;
    if msg.version() != PROTOCOL_VERSION {
        return Err(format!("unsupported protocol version {}", msg.version()));
    }
    Ok(msg)
}

/// Bytes of worker messages one read aims at: thousands of small results per read,
/// a handful of large ones (outputs may be megabytes each).
const READ_BYTES: usize = 32 << 20;
/// Bytes of worker messages read but not yet handled by the core: beyond it the reader
/// waits, so a burst of large results cannot grow memory without bound.
const UNHANDLED_BYTES: usize = 128 << 20;
/// How often entries left unacknowledged by a reader that stopped are taken over.
const RECLAIM_EVERY: Duration = Duration::from_secs(2);
/// An entry unacknowledged this long was read by a reader that stopped: the core
/// acknowledges what it handles within milliseconds of its commit.
const RECLAIM_IDLE: Duration = Duration::from_secs(5);
/// Longest raw text of an unreadable message kept in its dead letter.
const DEAD_RAW_BYTES: usize = 4 << 10;

pub(super) async fn run(
    mut reader: ResultsReader,
    batch: usize,
    tx: mpsc::Sender<Input>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut failures = 0u32;
    let mut count = batch;
    let budget = std::sync::Arc::new(tokio::sync::Semaphore::new(UNHANDLED_BYTES));
    let mut last_reclaim = std::time::Instant::now();
    loop {
        let reclaim = last_reclaim.elapsed() >= RECLAIM_EVERY;
        let read = tokio::select! {
            r = async {
                if reclaim {
                    last_reclaim = std::time::Instant::now();
                    reader.reclaim_stale(RECLAIM_IDLE.as_millis() as u64, count).await
                } else {
                    reader.read(count, 1_000).await
                }
            } => r,
            _ = shutdown.changed() => return,
        };
        match read {
            Ok(entries) if entries.is_empty() => {}
            Ok(entries) => {
                failures = 0;
                let bytes: usize = entries
                    .iter()
                    .map(|e| e.body.as_ref().map_or(0, Vec::len) + e.id.len())
                    .sum();
                count = (READ_BYTES / (bytes / entries.len()).max(1)).clamp(1, batch);
                // A batch larger than the whole budget waits for all of it.
                let want = bytes.clamp(1, UNHANDLED_BYTES) as u32;
                let held = tokio::select! {
                    p = std::sync::Arc::clone(&budget).acquire_many_owned(want) => match p {
                        Ok(p) => p,
                        Err(_) => return,
                    },
                    _ = shutdown.changed() => return,
                };
                let parsed = entries
                    .into_iter()
                    .map(|e| {
                        let msg = parse(e.body.as_deref()).map_err(|why| {
                            let raw = e
                                .body
                                .as_deref()
                                .map(|b| String::from_utf8_lossy(&b[..b.len().min(DEAD_RAW_BYTES)]))
                                .unwrap_or_default();
                            serde_json::json!({"reason": why, "raw": raw, "at_ms": super::now_ms()})
                                .to_string()
                        });
                        (e.id, msg)
                    })
                    .collect();
                if tx.send(Input::Worker(parsed, held)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(30) {
                    tracing::warn!(error = %e, "reading the results stream failed; retrying");
                }
                tokio::time::sleep(Duration::from_millis(200 * failures.min(10) as u64)).await;
            }
        }
    }
}
