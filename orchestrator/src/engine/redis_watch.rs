//! Watches Redis for what workers and Redis itself cannot report: entries of dead
//! workers (reclaimed once their lease lapses), a Redis that restarted empty (its
//! epoch key is gone), and new dead letters.

use super::Input;
use crate::queue::{QueueEntry, RedisQueue};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use worker_protocol::TaskMessage;

/// How often Redis is checked.
const PERIOD: Duration = Duration::from_secs(1);
/// Consumers are swept every this many checks.
const CONSUMER_SWEEP_TICKS: u64 = 60;
/// A consumer holding nothing that has not read for this long is a worker that is gone
/// (a live worker reads at least every few seconds, and would be added back anyway).
const CONSUMER_IDLE: Duration = Duration::from_secs(600);

/// An attempt as a task message names it: run and task by id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct NamedAttempt {
    pub run_id: String,
    pub task_id: String,
    pub attempt: u32,
}

/// Where each task message still in a queue stream is.
pub(super) type InRedis = HashMap<NamedAttempt, QueueEntry>;

/// Where each task message still in a queue stream is.
pub(super) async fn attempts_in_redis(
    queue: &RedisQueue,
) -> Result<InRedis, crate::queue::QueueError> {
    let mut present = HashMap::new();
    for q in queue.queues().await? {
        for entry in queue.scan(&q).await? {
            if let Some(m) = entry
                .body
                .as_deref()
                .and_then(|b| serde_json::from_slice::<TaskMessage>(b).ok())
            {
                let at = NamedAttempt {
                    run_id: m.run_id,
                    task_id: m.task_id,
                    attempt: m.attempt,
                };
                let entry = QueueEntry {
                    queue: q.clone(),
                    id: entry.id,
                };
                present.insert(at, entry);
            }
        }
    }
    Ok(present)
}

pub(super) async fn run(
    queue: Arc<RedisQueue>,
    lease_timeout: Duration,
    tx: mpsc::Sender<Input>,
    mut shutdown: watch::Receiver<bool>,
) {
    let epoch = uuid::Uuid::now_v7().to_string();
    let mut known_epoch: Option<String> = None;
    let mut last_dead = "0".to_owned();
    let mut first_dead_read = true;
    let mut tick = tokio::time::interval(PERIOD);
    let mut ticks: u64 = 0;
    loop {
        ticks += 1;
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        // A Redis that lost its data no longer carries the epoch set before.
        match queue.epoch(known_epoch.as_deref().unwrap_or(&epoch)).await {
            Ok(before) => {
                let current = before
                    .clone()
                    .unwrap_or_else(|| known_epoch.clone().unwrap_or_else(|| epoch.clone()));
                if let Some(known) = &known_epoch {
                    if before.as_deref() != Some(known.as_str()) {
                        tracing::warn!("Redis lost its data (restarted empty?): queueing every unfinished task again");
                        metrics::counter!("apex_redis_resets_total").increment(1);
                        queue.forget_groups();
                        if tx.send(Input::RedisReset).await.is_err() {
                            return;
                        }
                    }
                }
                known_epoch = Some(current);
            }
            Err(e) => {
                tracing::debug!(error = %e, "Redis unreachable; checking again shortly");
                continue;
            }
        }
        let Ok(queues) = queue.queues().await else {
            continue;
        };
        // Consumers of workers that are gone would stay in every group forever.
        if ticks.is_multiple_of(CONSUMER_SWEEP_TICKS) {
            for q in &queues {
                match queue
                    .remove_idle_consumers(q, CONSUMER_IDLE.as_millis() as u64)
                    .await
                {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(queue = %q, consumers = n, "removed consumers of workers that are gone")
                    }
                    Err(e) => tracing::debug!(queue = %q, error = %e, "cannot sweep consumers"),
                }
            }
        }
        for q in queues {
            match queue.reclaim(&q, lease_timeout.as_millis() as u64).await {
                Ok(entries) if !entries.is_empty() => {
                    tracing::warn!(queue = %q, entries = entries.len(), "taking over tasks of a worker that stopped renewing its lease");
                    let batch = entries.into_iter().map(|e| (q.clone(), e)).collect();
                    if tx.send(Input::Reclaimed(batch)).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(queue = %q, error = %e, "reclaim failed; trying again shortly")
                }
            }
        }
        if let Ok(dead) = queue.dead_letters_after(&last_dead).await {
            if let Some(last) = dead.last() {
                last_dead = last.id.clone();
            }
            // Letters from before this orchestrator started were reported by an earlier one.
            if !std::mem::take(&mut first_dead_read) && !dead.is_empty() {
                let bodies = dead
                    .iter()
                    .map(|e| {
                        e.body
                            .as_deref()
                            .and_then(|b| serde_json::from_slice(b).ok())
                            .unwrap_or(serde_json::Value::Null)
                    })
                    .collect();
                if tx.send(Input::DeadLetters(bodies)).await.is_err() {
                    return;
                }
            }
        }
    }
}
