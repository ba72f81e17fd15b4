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

pub(super) async fn run(
    mut reader: ResultsReader,
    batch: usize,
    tx: mpsc::Sender<Input>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut failures = 0u32;
    loop {
        let read = tokio::select! {
            r = reader.read(batch, 1_000) => r,
            _ = shutdown.changed() => return,
        };
        match read {
            Ok(entries) if entries.is_empty() => {}
            Ok(entries) => {
                failures = 0;
                let parsed = entries
                    .into_iter()
                    .map(|e| {
                        let msg = parse(e.body.as_deref()).map_err(|why| {
                            let raw = e
                                .body
                                .as_deref()
                                .map(String::from_utf8_lossy)
                                .unwrap_or_default();
                            serde_json::json!({"reason": why, "raw": raw, "at_ms": super::now_ms()})
                                .to_string()
                        });
                        (e.id, msg)
                    })
                    .collect();
                if tx.send(Input::Worker(parsed)).await.is_err() {
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
