//! Workers and queues: worker liveness, attempts gone idle, queue stats with their
//! autoscalers, and the queue names in use (capped, and reaped when idle).

use super::core::Core;
use super::EngineError;
use crate::autoscale::Autoscaler;
use crate::dag::Dag;
use crate::state_machine::{AttemptFailure, TaskFailure, TaskState};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use worker_protocol::{ControlMessage, WorkerInfo, PROTOCOL_VERSION};

/// Work and workers of one queue.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct QueueStats {
    pub name: String,
    /// Tasks waiting to be taken: queued in Redis, or `ready` (backoff, limits).
    pub depth: u64,
    /// Attempts in flight.
    pub running: u64,
    /// Workers serving this queue.
    pub workers_active: u64,
    /// Workers the current work calls for: all of it in flight at once.
    pub workers_desired: u64,
}

/// A worker's liveness as the engine tracks it.
///
/// ```text
/// heartbeat ──▶ Running ⇄ Draining ──(stopped message)──▶ Stopped
///                  └─────────┴──────(silent too long)───▶ Lost
/// ```
/// A heartbeat brings any state back to `Running` or `Draining`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WorkerState {
    Running,
    Draining,
    Stopped,
    Lost,
}

impl WorkerState {
    /// The name stored and shown by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Draining => "draining",
            Self::Stopped => "stopped",
            Self::Lost => "lost",
        }
    }

    /// A stored state; one this version does not know counts as lost.
    pub fn from_stored(s: &str) -> Self {
        match s {
            "running" => Self::Running,
            "draining" => Self::Draining,
            "stopped" => Self::Stopped,
            _ => Self::Lost,
        }
    }

    /// Whether it should be heartbeating: only then does silence make it lost.
    pub fn is_live(self) -> bool {
        matches!(self, Self::Running | Self::Draining)
    }

    /// Whether it takes new work (counts for its queues and their autoscalers).
    pub fn serves(self) -> bool {
        self == Self::Running
    }
}

impl From<worker_protocol::WorkerState> for WorkerState {
    fn from(s: worker_protocol::WorkerState) -> Self {
        match s {
            worker_protocol::WorkerState::Running => Self::Running,
            worker_protocol::WorkerState::Draining => Self::Draining,
        }
    }
}

/// A worker as the engine last heard from it.
pub(super) struct WorkerSeen {
    pub(super) info: WorkerInfo,
    pub(super) state: WorkerState,
    pub(super) last_heartbeat_ms: i64,
    /// Interned id, shared by every task row it ran.
    pub(super) id: Arc<str>,
}

impl WorkerSeen {
    /// Marks a live worker lost when it has been silent longer than allowed (at least
    /// three of its own heartbeat intervals). Answers how long it was silent if so.
    fn expire(&mut self, now: i64, lost_after_ms: i64) -> Option<i64> {
        let silent_for = now - self.last_heartbeat_ms;
        let limit = lost_after_ms.max((self.info.heartbeat_interval_s * 3000.0) as i64);
        if self.state.is_live() && silent_for > limit {
            self.state = WorkerState::Lost;
            return Some(silent_for);
        }
        None
    }
}

impl Core {
    /// Counts the queues Redis already has as in use now, so they are reaped only after
    /// the idle time like any other.
    pub fn seed_queues(&mut self, names: Vec<String>) {
        let now = self.config.clock.now_ms();
        for q in names {
            self.queues_seen.entry(q).or_insert(now);
        }
    }

    /// Refuses a run that would bring the distinct queue names in use past the cap: each
    /// is a Redis stream, a consumer group, a reclaim per second and an autoscaler.
    pub(super) fn admit_queues(&mut self, dag: &Dag) -> Result<(), EngineError> {
        let now = self.config.clock.now_ms();
        let wanted: HashSet<&str> = (0..dag.len() as u32).map(|i| dag.queue_of(i)).collect();
        let new: Vec<&str> = wanted
            .iter()
            .copied()
            .filter(|q| {
                !self.queues_seen.contains_key(*q) && !self.config.queues.iter().any(|c| c == q)
            })
            .collect();
        let in_use = self.queues_seen.len()
            + self
                .config
                .queues
                .iter()
                .filter(|q| !self.queues_seen.contains_key(q.as_str()))
                .count();
        if !new.is_empty() && in_use + new.len() > self.config.max_queues {
            let mut names = new.clone();
            names.sort_unstable();
            names.truncate(5);
            return Err(EngineError::Invalid(crate::dag::ValidationErrors(vec![
                crate::dag::Problem {
                    code: crate::dag::ProblemCode::TooManyQueues,
                    message: format!(
                        "this run names {} queue(s) not in use ({}{}); {in_use} are in use and the server allows {} (--max-queues)",
                        new.len(),
                        names.join(", "),
                        if new.len() > names.len() { ", …" } else { "" },
                        self.config.max_queues
                    ),
                    tasks: vec![],
                },
            ])));
        }
        for q in wanted {
            self.queues_seen.insert(q.to_owned(), now);
        }
        Ok(())
    }

    /// Queues unused for the idle time are forgotten, and their (empty) streams and
    /// groups removed from Redis.
    pub(super) fn reap_idle_queues(&mut self, now: i64) {
        let idle = self.config.queue_idle.as_millis() as i64;
        let configured = &self.config.queues;
        let reaped: Vec<String> = self
            .queues_seen
            .iter()
            .filter(|(q, last)| now - **last > idle && !configured.contains(q))
            .map(|(q, _)| q.clone())
            .collect();
        for q in reaped {
            self.queues_seen.remove(&q);
            self.autoscalers.remove(&q);
            tracing::info!(queue = %q, "removing an idle queue");
            self.pending.flush.outgoing.reap_queues.push(q);
        }
    }

    /// Marks lost the workers that stopped heartbeating.
    pub(super) fn expire_silent_workers(&mut self, now: i64) {
        let lost_after = self.config.worker_lost_after.as_millis() as i64;
        for (id, w) in self.workers.iter_mut() {
            if let Some(silent_ms) = w.expire(now, lost_after) {
                tracing::warn!(worker = %id, silent_ms, "worker lost: no heartbeat");
                self.pending.dirty_workers.insert(id.clone());
            }
        }
    }

    /// Fails running attempts that showed no sign of life within their idle timeout.
    pub(super) fn expire_idle(&mut self, now: i64) {
        let mut expired = Vec::new();
        for (id, run) in &self.runs {
            for (&i, seen) in &run.activity {
                let (attempt, last) = (seen.attempt, seen.last_ms);
                let Some(limit) = run.machine.dag().task(i).idle_timeout_s else {
                    continue;
                };
                if now - last > (limit * 1000.0) as i64 {
                    expired.push((Arc::clone(id), i, attempt, limit));
                }
            }
        }
        for (id, i, attempt, limit) in expired {
            let failure = AttemptFailure {
                failure: TaskFailure {
                    kind: "idle_timeout".into(),
                    error_type: None,
                    message: format!("no progress for {limit} s (idle_timeout_s)"),
                    traceback: None,
                },
                retryable: true,
                retry_after_s: None,
                started_at_ms: None,
                usage: None,
            };
            let task_id = self.runs[&id].machine.dag().task(i).id.clone();
            if self
                .apply(&id, |m, o| m.failed(i, attempt, failure, None, now, o))
                .is_ok()
            {
                let msg = ControlMessage::Cancel {
                    v: PROTOCOL_VERSION,
                    run_id: id.to_string(),
                    task_id,
                    attempt,
                };
                self.pending
                    .flush
                    .outgoing
                    .controls
                    .push(serde_json::to_string(&msg).expect("control serialises"));
            }
        }
    }

    /// Work, workers and desired workers per queue. Evaluates each queue's autoscaler,
    /// so it is called at least once a second (housekeeping) to let cooldowns pass.
    pub(super) fn queue_stats(&mut self) -> Vec<QueueStats> {
        fn touch<'a>(
            by_queue: &'a mut BTreeMap<String, QueueStats>,
            q: &str,
        ) -> &'a mut QueueStats {
            by_queue.entry(q.to_owned()).or_insert_with(|| QueueStats {
                name: q.to_owned(),
                ..Default::default()
            })
        }
        let mut by_queue: BTreeMap<String, QueueStats> = BTreeMap::new();
        for q in self.autoscalers.keys() {
            touch(&mut by_queue, q);
        }
        for w in self.workers.values().filter(|w| w.state.serves()) {
            for q in &w.info.queues {
                touch(&mut by_queue, q);
            }
        }
        let live = [TaskState::Ready, TaskState::Queued, TaskState::Running];
        for run in self.runs.values() {
            let c = run.machine.counts();
            if live.iter().all(|s| c[*s as usize] == 0) && !run.machine.has_deferred() {
                continue;
            }
            let dag = run.machine.dag();
            // Held back only for room, so that a wide run does not fill its queue at
            // once: depth all the same, or the fleet would not grow for it.
            let deferred = run.machine.deferred_tasks();
            if !dag.mixed_queues() {
                // Every task on the run's queue: its counters say it all, without a
                // look at each of (perhaps a million) tasks every second.
                let s = touch(&mut by_queue, &dag.queue);
                let ready = c[TaskState::Ready as usize] as usize - run.machine.waiting_count();
                s.depth +=
                    (ready + c[TaskState::Queued as usize] as usize + deferred.count()) as u64;
                s.running += u64::from(c[TaskState::Running as usize]);
                continue;
            }
            for i in deferred {
                touch(&mut by_queue, dag.queue_of(i)).depth += 1;
            }
            for (i, t) in run.machine.tasks().iter().enumerate() {
                // Tasks held back by a limit or budget would not run on more workers.
                if !live.contains(&t.state) || run.machine.is_waiting(i as u32) {
                    continue;
                }
                let s = touch(&mut by_queue, dag.queue_of(i as u32));
                match t.state {
                    TaskState::Running => s.running += 1,
                    _ => s.depth += 1,
                }
            }
        }
        let now = self.config.clock.now_ms();
        for s in by_queue.values_mut() {
            if s.depth > 0
                || s.running > 0
                || self
                    .workers
                    .values()
                    .any(|w| w.state.serves() && w.info.queues.contains(&s.name))
            {
                self.queues_seen.insert(s.name.clone(), now);
            }
            let serving: Vec<&WorkerSeen> = self
                .workers
                .values()
                .filter(|w| w.state.serves() && w.info.queues.contains(&s.name))
                .collect();
            // Size the fleet in units of the workers actually serving the queue.
            let slots = (!serving.is_empty()).then(|| {
                let total: u64 = serving.iter().map(|w| w.info.concurrency as u64).sum();
                (total / serving.len() as u64) as u32
            });
            let policy = self.config.autoscale;
            let scaler = self
                .autoscalers
                .entry(s.name.clone())
                .or_insert_with(|| Autoscaler::new(policy));
            s.workers_active = serving.len() as u64;
            s.workers_desired = scaler.observe(s.depth, s.running, slots, now) as u64;
        }
        by_queue.into_values().collect()
    }
}

/// A worker as the API shows it.
pub fn worker_view(info: &Value, state: &str, last_heartbeat_ms: i64) -> Value {
    let mut v = info.clone();
    if let Value::Object(m) = &mut v {
        m.insert("state".into(), state.into());
        m.insert("last_heartbeat_ms".into(), last_heartbeat_ms.into());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Clock, EngineConfig};
    use std::time::Duration;
    use tokio::sync::mpsc;
    use worker_protocol::{Heartbeat, WorkerMessage, WorkerStopped};

    fn info(id: &str, heartbeat_interval_s: f64) -> WorkerInfo {
        WorkerInfo {
            id: id.into(),
            host: "h".into(),
            pid: 1,
            queues: vec!["default".into()],
            concurrency: 4,
            in_flight: 0,
            handlers: vec![],
            version: "test".into(),
            started_at_ms: 0,
            state: worker_protocol::WorkerState::Running,
            heartbeat_interval_s,
        }
    }

    #[test]
    fn stored_states_round_trip_and_unknown_ones_count_as_lost() {
        for s in [
            WorkerState::Running,
            WorkerState::Draining,
            WorkerState::Stopped,
            WorkerState::Lost,
        ] {
            assert_eq!(WorkerState::from_stored(s.as_str()), s);
        }
        assert_eq!(WorkerState::from_stored("zombie"), WorkerState::Lost);
        assert!(WorkerState::Draining.is_live() && !WorkerState::Draining.serves());
        assert!(!WorkerState::Stopped.is_live() && !WorkerState::Lost.is_live());
    }

    #[test]
    fn only_a_live_worker_silent_past_its_limit_is_lost() {
        let mut w = WorkerSeen {
            info: info("w", 5.0),
            state: WorkerState::Running,
            last_heartbeat_ms: 0,
            id: Arc::from("w"),
        };
        // Three of its own 5 s intervals outweigh a 10 s floor.
        assert_eq!(w.expire(15_000, 10_000), None);
        assert_eq!(w.expire(15_001, 10_000), Some(15_001));
        assert_eq!(w.state, WorkerState::Lost);
        w.state = WorkerState::Stopped;
        assert_eq!(
            w.expire(1_000_000, 10_000),
            None,
            "a stopped worker stays stopped"
        );
    }

    /// A fresh SQLite file, removed on drop: the core needs a store, not a running one.
    struct TempDir(std::path::PathBuf);

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Drives the core's housekeeping with a manual clock: nothing sleeps, and the
    /// worker is lost exactly when the clock passes its limit.
    #[tokio::test]
    async fn housekeeping_marks_a_silent_worker_lost_by_the_engine_clock() {
        let dir =
            TempDir(std::env::temp_dir().join(format!("apex-fleet-{}", uuid::Uuid::now_v7())));
        let store = crate::store::open(&format!("sqlite://{}/apex.db", dir.0.display()))
            .await
            .expect("store");
        let clock = Clock::manual(1_700_000_000_000);
        let config = EngineConfig {
            worker_lost_after: Duration::from_secs(10),
            clock: clock.clone(),
            ..EngineConfig::default()
        };
        let (flush_tx, mut flushes) = mpsc::channel(8);
        let (_enqueued_tx, enqueued_rx) = mpsc::unbounded_channel();
        let (inbox, _inbox_rx) = mpsc::channel(1);
        let mut core = Core::new(store, config, flush_tx, enqueued_rx, inbox.downgrade());

        core.on_worker_message(WorkerMessage::Heartbeat(Heartbeat {
            v: PROTOCOL_VERSION,
            worker: info("w1", 1.0),
            // A heartbeat stamped before the engine's time counts as heard now.
            at_ms: clock.now_ms() - 500,
        }));
        core.flush().await;
        let stored = flushes.recv().await.expect("a flush").batch.workers;
        assert_eq!(stored[0].state, "running");
        assert_eq!(stored[0].last_heartbeat_ms, clock.now_ms());

        clock.advance(Duration::from_secs(10));
        core.housekeeping();
        assert_eq!(
            core.workers["w1"].state,
            WorkerState::Running,
            "not yet past 10 s"
        );

        clock.advance(Duration::from_millis(1));
        core.housekeeping();
        core.flush().await;
        let stored = flushes.recv().await.expect("a flush").batch.workers;
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].state, "lost");

        // A stopped worker is not lost however long it stays silent.
        core.on_worker_message(WorkerMessage::Heartbeat(Heartbeat {
            v: PROTOCOL_VERSION,
            worker: info("w2", 1.0),
            at_ms: clock.now_ms(),
        }));
        core.on_worker_message(WorkerMessage::WorkerStopped(WorkerStopped {
            v: PROTOCOL_VERSION,
            worker_id: "w2".into(),
            at_ms: clock.now_ms(),
        }));
        clock.advance(Duration::from_secs(3600));
        core.housekeeping();
        assert_eq!(core.workers["w2"].state, WorkerState::Stopped);
    }

    /// Queue depth from a run's counters (one queue) agrees with a look at each task
    /// (tasks on another queue): waiting for a limit is not depth, queued is.
    #[tokio::test]
    async fn queue_stats_count_from_counters_as_a_scan_of_the_tasks_would() {
        let dir =
            TempDir(std::env::temp_dir().join(format!("apex-fleet-{}", uuid::Uuid::now_v7())));
        let store = crate::store::open(&format!("sqlite://{}/apex.db", dir.0.display()))
            .await
            .expect("store");
        let (flush_tx, _flushes) = mpsc::channel(8);
        let (_enqueued_tx, enqueued_rx) = mpsc::unbounded_channel();
        let (inbox, _inbox_rx) = mpsc::channel(1);
        let mut core = Core::new(
            store,
            EngineConfig::default(),
            flush_tx,
            enqueued_rx,
            inbox.downgrade(),
        );
        let dag = |spec: serde_json::Value| {
            let spec: crate::dag::RunSpec = serde_json::from_value(spec).unwrap();
            Arc::new(crate::dag::validate(spec, &crate::dag::Limits::default()).unwrap())
        };
        // Five on a key of 2: two queued, three waiting.
        let keyed: Vec<serde_json::Value> = (0..5)
            .map(|i| serde_json::json!({"id": format!("k{i}"), "handler": "noop", "concurrency_key": "k"}))
            .collect();
        let one_queue = dag(serde_json::json!({
            "tasks": keyed, "concurrency_limits": {"k": {"max_concurrency": 2}},
        }));
        assert!(!one_queue.mixed_queues());
        let mixed = dag(serde_json::json!({"tasks": [
            {"id": "a", "handler": "noop"},
            {"id": "b", "handler": "noop", "queue": "other"},
            {"id": "c", "handler": "noop", "queue": "other", "depends_on": ["a"]},
        ]}));
        assert!(mixed.mixed_queues());
        core.submit(one_queue, Vec::new(), Arc::from("t"));
        core.submit(mixed, Vec::new(), Arc::from("t"));
        core.admit_waiting();
        let stats = core.queue_stats();
        let depth: Vec<(&str, u64, u64)> = stats
            .iter()
            .map(|q| (q.name.as_str(), q.depth, q.running))
            .collect();
        assert_eq!(depth, vec![("default", 3, 0), ("other", 1, 0)]);

        // Tasks held back for room (a run wider than a flush) are depth too, counted
        // from a run's counters and from a look at each task alike.
        let wide = |run_queue: &str, queues: [&str; 2]| {
            let tasks: Vec<serde_json::Value> = (0..10)
                .map(|i| {
                    serde_json::json!({"id": format!("t{i}"), "handler": "noop", "queue": queues[i % 2]})
                })
                .collect();
            dag(serde_json::json!({"queue": run_queue, "tasks": tasks}))
        };
        let one_queue = wide("third", ["third", "third"]);
        assert!(!one_queue.mixed_queues());
        core.room = 4;
        core.submit(one_queue, Vec::new(), Arc::from("t"));
        core.room = 4;
        core.submit(
            wide("third", ["fourth", "fifth"]),
            Vec::new(),
            Arc::from("t"),
        );
        assert_eq!(core.deferred_runs.len(), 2, "both held back in part");
        let stats = core.queue_stats();
        let depth: Vec<(&str, u64, u64)> = stats
            .iter()
            .filter(|q| ["third", "fourth", "fifth"].contains(&q.name.as_str()))
            .map(|q| (q.name.as_str(), q.depth, q.running))
            .collect();
        assert_eq!(
            depth,
            vec![("fifth", 5, 0), ("fourth", 5, 0), ("third", 10, 0)]
        );
    }
}
