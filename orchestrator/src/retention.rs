//! Retention, a leader job: deletes finished runs (their tasks and events with them)
//! once they are older than `--retain-finished-days` or their own `ttl_s`, in bounded
//! batches of short transactions, so the engine's group commits never wait long
//! behind it. Runs live in the store only: Redis holds no per-run keys to remove (task
//! entries are deleted as their results are stored).

use crate::api::AppState;
use crate::store::daily::Deleted;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Starts the job; it stops when `shutdown` turns true.
pub fn spawn(state: AppState, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    let every = Duration::from_secs(state.daily.retention_interval_s);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(every) => {}
            }
            loop {
                match pass(&state).await {
                    // A full batch: more may be due; the next batch after a breath.
                    Ok(n) if n == state.daily.retention_batch as usize => {
                        tokio::time::sleep(Duration::from_millis(50)).await
                    }
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "retention pass failed; will try again");
                        break;
                    }
                }
            }
        }
    })
}

/// Deletes one batch of due runs; how many were due.
async fn pass(state: &AppState) -> Result<usize, crate::api::error::ApiError> {
    let now = crate::engine::now_ms();
    let keep_ms = state.daily.retain_finished_ms;
    let due = state
        .store
        .daily()
        .due_runs(now, keep_ms, state.daily.retention_batch)
        .await?;
    if due.is_empty() {
        return Ok(0);
    }
    let deleted = delete(state, &due).await?;
    tracing::info!(
        runs = deleted.runs,
        tasks = deleted.tasks,
        events = deleted.events,
        "retention deleted finished runs"
    );
    Ok(due.len())
}

/// Deletes finished runs now (retention, or `DELETE /api/v1/runs/{id}`); active runs
/// are left alone.
pub async fn delete(
    state: &AppState,
    ids: &[String],
) -> Result<Deleted, crate::api::error::ApiError> {
    let _no_rerun = state.daily.deletions.lock().await;
    let mut finished = Vec::with_capacity(ids.len());
    for id in ids {
        // The engine lets go of it first, so it never writes for a deleted run.
        if state.engine.forget(id).await? {
            finished.push(id.clone());
        }
    }
    let deleted = state.store.daily().delete_runs(&finished).await;
    // Whether or not it went through, cached reads of these runs are not to be trusted.
    state.engine.generation().advance();
    let deleted = deleted?;
    metrics::counter!("apex_retention_deleted_total", "what" => "runs").increment(deleted.runs);
    metrics::counter!("apex_retention_deleted_total", "what" => "tasks").increment(deleted.tasks);
    metrics::counter!("apex_retention_deleted_total", "what" => "events").increment(deleted.events);
    Ok(deleted)
}
