//! The core loop: owns every active run, applies inputs in batches, and emits one
//! [`Flush`] per batch. It never waits on Redis; it waits on the store only to load a
//! run that is not in memory (recovery, a retry of an old run).

use super::active::{self, ActiveRun};
use super::limiter::Limiter;
use super::log_cap::{self, Verdict};
use super::writer::{Enqueued, Flush};
use super::{now_ms, EngineConfig, EngineError, Input, RunReply};
use crate::autoscale::Autoscaler;
use crate::dag::{Dag, KeyLimit};
use crate::queue::OutTask;
use crate::state_machine::{
    budget, AttemptFailure, AttemptSuccess, Command, EventKind, Gate, Output, Rejected, RunMachine,
    TaskFailure, TaskState,
};
use crate::store::{EventRow, NewRun, Store, WorkerRow};
use crate::views;
use serde::Serialize;
use serde_json::{json, Value};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use worker_protocol::{
    ControlMessage, Outcome, TaskKind, TaskMessage, WorkerInfo, WorkerMessage, PROTOCOL_VERSION,
};

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

/// A worker as the engine last heard from it.
struct WorkerSeen {
    info: WorkerInfo,
    state: &'static str,
    last_heartbeat_ms: i64,
    /// Interned id, shared by every task row it ran.
    id: Arc<str>,
}

/// Writes and answers accumulated while handling one batch of inputs.
#[derive(Default)]
struct Pending {
    flush: Flush,
    new_runs: Vec<Arc<str>>,
    dirty_tasks: HashSet<(Arc<str>, u32)>,
    dirty_runs: HashSet<Arc<str>>,
    dirty_workers: HashSet<String>,
    /// Tasks spawned into runs already stored, and tasks whose spec a spawn changed.
    new_tasks: Vec<(Arc<str>, u32)>,
    respecced: HashSet<(Arc<str>, u32)>,
    /// Callers to answer with their run's row once this batch is stored.
    replies: Vec<(RunReply, Arc<str>)>,
}

/// A retry due at `.0` (ms) for `(run, task, attempt)`.
type Timer = Reverse<(i64, Arc<str>, u32, u32)>;

/// Inputs handled before a flush; bounds the latency a long burst adds.
const MAX_BATCH_INPUTS: usize = 256;

pub(super) struct Core {
    store: Arc<dyn Store>,
    config: EngineConfig,
    flush_tx: mpsc::Sender<Flush>,
    runs: HashMap<Arc<str>, ActiveRun>,
    timers: BinaryHeap<Timer>,
    workers: HashMap<String, WorkerSeen>,
    pending: Pending,
    /// Reused for every stimulus, to avoid allocating per task.
    out: Output,
    /// Queue stats last published, to publish only changes.
    last_queues: Vec<QueueStats>,
    /// Entry ids of task messages, reported by the writer once Redis assigned them.
    enqueued: mpsc::UnboundedReceiver<Enqueued>,
    /// Desired workers per queue, remembered between evaluations for their cooldowns.
    autoscalers: HashMap<String, Autoscaler>,
    /// Limits shared by every run (agents, concurrency keys).
    limiter: Limiter,
    /// Runs with tasks waiting in `ready` for a limit or budget.
    waiting_runs: HashSet<Arc<str>>,
    /// Something changed that may let a waiting task go: try admitting at the batch end.
    admit_due: bool,
    /// When a rate limit frees up next.
    admit_wake_ms: Option<i64>,
    /// Attempts that must fail without running, found while turning commands into
    /// writes (a message too large to send, or one Redis refused); failed as soon as
    /// the stimulus that dispatched them is done.
    refused: Vec<(Arc<str>, u32, u32, TaskFailure)>,
    /// Queue names in use, with when they last were (tasks, runs or workers on them).
    queues_seen: HashMap<String, i64>,
    /// The loop's own input, for work done off the loop to come back (weak, so the
    /// loop still ends when every handle is gone).
    inbox: mpsc::WeakSender<Input>,
    /// The API token whose request is being applied (submit, cancel, retry), recorded
    /// as `by` on the events it causes; `None` for everything else.
    actor: Option<Arc<str>>,
}

/// The core's [`Gate`]: the shared limiter, asked on behalf of one run.
struct SharedLimits<'a> {
    limiter: &'a mut Limiter,
    run: &'a Arc<str>,
    now_ms: i64,
}

impl Gate for SharedLimits<'_> {
    fn try_acquire(
        &mut self,
        task: u32,
        attempt: u32,
        keys: &[(String, KeyLimit)],
        tokens: u64,
    ) -> bool {
        self.limiter
            .try_acquire(self.run, task, attempt, keys, tokens, self.now_ms)
    }
}

/// Attempts the store said were queued or running when the engine started.
pub(super) type InFlight = Vec<(Arc<str>, u32, u32)>;

impl Core {
    pub fn new(
        store: Arc<dyn Store>,
        config: EngineConfig,
        flush_tx: mpsc::Sender<Flush>,
        enqueued: mpsc::UnboundedReceiver<Enqueued>,
        inbox: mpsc::WeakSender<Input>,
    ) -> Self {
        let autoscalers = config
            .queues
            .iter()
            .map(|q| (q.clone(), Autoscaler::new(config.autoscale)))
            .collect();
        let limiter = Limiter::new(config.ceilings.clone());
        Self {
            store,
            config,
            flush_tx,
            runs: HashMap::new(),
            timers: BinaryHeap::new(),
            workers: HashMap::new(),
            pending: Pending::default(),
            out: Output::default(),
            last_queues: Vec::new(),
            enqueued,
            autoscalers,
            limiter,
            waiting_runs: HashSet::new(),
            admit_due: true,
            admit_wake_ms: None,
            refused: Vec::new(),
            queues_seen: HashMap::new(),
            inbox,
            actor: None,
        }
    }

    /// Loads every running run and known worker from the store, and carries out what
    /// was decided but not done before the last stop. Returns the attempts the store
    /// says are queued or running, for [`Core::reconcile`].
    pub async fn recover(&mut self) -> Result<InFlight, EngineError> {
        let mut in_flight = Vec::new();
        for w in self.store.list_workers().await? {
            if let Ok(info) = serde_json::from_value::<WorkerInfo>(w.info) {
                let state = match w.state.as_str() {
                    "running" => "running",
                    "draining" => "draining",
                    "stopped" => "stopped",
                    _ => "lost",
                };
                let id: Arc<str> = Arc::from(w.id.as_str());
                self.workers.insert(
                    w.id,
                    WorkerSeen {
                        info,
                        state,
                        last_heartbeat_ms: w.last_heartbeat_ms,
                        id,
                    },
                );
            }
        }
        let active = self.store.active_runs().await?;
        let now = now_ms();
        for run in &active {
            match active::load(self.store.as_ref(), &run.id).await {
                Ok(Some(r)) => {
                    let id = Arc::clone(&r.id);
                    for (i, t) in r.machine.tasks().iter().enumerate() {
                        if matches!(t.state, TaskState::Queued | TaskState::Running) {
                            in_flight.push((Arc::clone(&id), i as u32, t.attempt));
                            // Attempts still out count against shared limits as before.
                            let keys = r.machine.limit_keys(i as u32);
                            self.limiter.hold(&id, i as u32, &keys);
                        }
                    }
                    self.runs.insert(Arc::clone(&id), r);
                    self.schedule_stranded_retries(&id, now);
                    let _ = self.apply(&id, |m, o| {
                        m.resume(now, o);
                        Ok(())
                    });
                }
                Ok(None) => {}
                Err(e) => tracing::error!(run = %run.id, error = %e, "cannot recover run"),
            }
        }
        if !active.is_empty() {
            tracing::info!(runs = active.len(), "recovered running runs from the store");
        }
        self.admit_waiting();
        self.flush().await;
        Ok(in_flight)
    }

    /// Queues again each attempt of `in_flight` whose message Redis does not hold.
    pub async fn reconcile(
        &mut self,
        in_flight: InFlight,
        present: &HashMap<(String, String, u32), (String, String)>,
    ) {
        let now = now_ms();
        let mut requeued = 0;
        for (id, i, attempt) in in_flight {
            let Some(run) = self.runs.get_mut(&id) else {
                continue;
            };
            let key = (
                id.to_string(),
                run.machine.dag().task(i).id.clone(),
                attempt,
            );
            if let Some((queue, entry)) = present.get(&key) {
                // Known again, so reports can be checked against it after a restart.
                run.entries
                    .insert(i, (attempt, queue.clone(), entry.clone()));
                continue;
            }
            if self
                .apply(&id, |m, o| m.released(i, attempt, now, o))
                .is_ok()
            {
                requeued += 1;
            }
        }
        if requeued > 0 {
            tracing::warn!(
                tasks = requeued,
                "queued again tasks the store had queued but Redis did not hold"
            );
        }
        self.flush().await;
    }

    /// Tasks found in `ready` after a restart lost their backoff timer: retry them now.
    fn schedule_stranded_retries(&mut self, id: &Arc<str>, now: i64) {
        let run = &self.runs[id];
        for (i, t) in run.machine.tasks().iter().enumerate() {
            if t.state == TaskState::Ready {
                self.timers
                    .push(Reverse((now, Arc::clone(id), i as u32, t.attempt)));
            }
        }
    }

    pub async fn run(
        &mut self,
        mut rx: mpsc::Receiver<Input>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next_timer = match (self.timers.peek().map(|Reverse(t)| t.0), self.admit_wake_ms) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let timer = async {
                match next_timer {
                    Some(due) => {
                        tokio::time::sleep(Duration::from_millis((due - now_ms()).max(0) as u64))
                            .await
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                input = rx.recv() => {
                    let Some(input) = input else { break };
                    self.handle(input).await;
                    for _ in 1..MAX_BATCH_INPUTS {
                        match rx.try_recv() {
                            Ok(input) => self.handle(input).await,
                            Err(_) => break,
                        }
                    }
                }
                Some(landed) = self.enqueued.recv() => self.on_enqueued(landed),
                _ = timer => {}
                _ = tick.tick() => self.housekeeping(),
            }
            self.fire_timers();
            self.admit_waiting();
            self.flush().await;
        }
        self.flush().await;
    }

    async fn handle(&mut self, input: Input) {
        match input {
            Input::Submit { dag, by, reply } => {
                if let Err(e) = self.admit_queues(&dag) {
                    let _ = reply.send(Err(e));
                    return;
                }
                let id = self.submit(dag, by);
                self.pending.replies.push((reply, id));
            }
            // A run no longer in memory is loaded off the loop, so a big old run does not
            // stall scheduling for every other run; the request comes back as `Loaded`.
            Input::Cancel { ref run_id, .. } | Input::Rerun { ref run_id, .. }
                if !self.runs.contains_key(run_id.as_str()) =>
            {
                self.load_then(input);
            }
            Input::Loaded { run, then } => match run {
                Ok(Some(run)) => {
                    let id = Arc::clone(&run.id);
                    self.runs.entry(id).or_insert(*run);
                    Box::pin(self.handle(*then)).await;
                }
                Ok(None) => reply_to(*then, |id| EngineError::RunNotFound(id.to_owned())),
                Err(e) => reply_to(*then, |_| EngineError::Store(e)),
            },
            Input::Cancel { run_id, by, reply } => match self.cancel(&run_id, by).await {
                Ok(id) => self.pending.replies.push((reply, id)),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Input::Rerun { run_id, by, reply } => match self.rerun(&run_id, by).await {
                Ok(id) => self.pending.replies.push((reply, id)),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Input::Worker(entries, _held) => {
                for (entry_id, msg) in entries {
                    self.pending.flush.outgoing.result_acks.push(entry_id);
                    match msg {
                        Ok(msg) => self.on_worker_message(msg),
                        Err(dead) => {
                            tracing::warn!(message = %dead, "unreadable worker message moved to the dead-letter stream");
                            metrics::counter!("apex_dead_letters_total").increment(1);
                            self.pending.flush.outgoing.dead.push(dead);
                        }
                    }
                }
            }
            Input::QueueStats { reply } => {
                let _ = reply.send(self.queue_stats());
            }
            Input::Reclaimed(entries) => self.on_reclaimed(entries),
            Input::RedisReset => self.on_redis_reset(),
            Input::DeadLetters(letters) => {
                for letter in letters {
                    metrics::counter!("apex_dead_letters_total").increment(1);
                    let body = json!({"kind": "dead_letter", "letter": letter, "at_ms": now_ms()});
                    self.pending.flush.live.push((None, None, body));
                }
            }
            Input::Forget { run_id, reply } => {
                let active =
                    (self.runs.get(run_id.as_str())).is_some_and(|r| r.finished_at.is_none());
                if !active {
                    self.runs.remove(run_id.as_str());
                }
                let _ = reply.send(!active);
            }
            Input::Progress { run_id, reply } => {
                let out = self
                    .runs
                    .get(run_id.as_str())
                    .map(|r| {
                        r.progress
                            .iter()
                            .map(|(i, (p, m))| (r.machine.dag().task(*i).id.clone(), *p, m.clone()))
                            .collect()
                    })
                    .unwrap_or_default();
                let _ = reply.send(out);
            }
        }
    }

    /// Counts the queues Redis already has as in use now, so they are reaped only after
    /// the idle time like any other.
    pub fn seed_queues(&mut self, names: Vec<String>) {
        let now = now_ms();
        for q in names {
            self.queues_seen.entry(q).or_insert(now);
        }
    }

    /// Refuses a run that would bring the distinct queue names in use past the cap: each
    /// is a Redis stream, a consumer group, a reclaim per second and an autoscaler.
    fn admit_queues(&mut self, dag: &Dag) -> Result<(), EngineError> {
        let now = now_ms();
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
    fn reap_idle_queues(&mut self, now: i64) {
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

    fn submit(&mut self, dag: Arc<Dag>, by: Arc<str>) -> Arc<str> {
        let id: Arc<str> = Arc::from(uuid::Uuid::now_v7().to_string().as_str());
        let now = now_ms();
        let run = ActiveRun {
            id: Arc::clone(&id),
            machine: RunMachine::new(dag),
            created_at_ms: now,
            created_by: Some(Arc::clone(&by)),
            progress: HashMap::new(),
            finished_at: None,
            entries: HashMap::new(),
            activity: HashMap::new(),
            output_sizes: HashMap::new(),
            logs: Default::default(),
        };
        self.runs.insert(Arc::clone(&id), run);
        self.pending.new_runs.push(Arc::clone(&id));
        let _ = self.apply_as(by, &id, |m, o| {
            m.start(now, o);
            Ok(())
        });
        metrics::counter!("apex_runs_submitted_total").increment(1);
        id
    }

    /// Finds a run in memory, or loads it from the store.
    /// Loads a stored run in a task of its own, then hands `next` back to the loop.
    fn load_then(&self, next: Input) {
        let (Input::Cancel { run_id, .. } | Input::Rerun { run_id, .. }) = &next else {
            return;
        };
        let run_id = run_id.clone();
        let store = Arc::clone(&self.store);
        let inbox = self.inbox.clone();
        tokio::spawn(async move {
            let run = active::load(store.as_ref(), &run_id)
                .await
                .map(|r| r.map(Box::new));
            if let Some(tx) = inbox.upgrade() {
                let _ = tx
                    .send(Input::Loaded {
                        run,
                        then: Box::new(next),
                    })
                    .await;
            }
        });
    }

    async fn find(&mut self, run_id: &str) -> Result<Arc<str>, EngineError> {
        if let Some((id, _)) = self.runs.get_key_value(run_id) {
            return Ok(Arc::clone(id));
        }
        match active::load(self.store.as_ref(), run_id).await? {
            Some(run) => {
                let id = Arc::clone(&run.id);
                self.runs.insert(Arc::clone(&id), run);
                Ok(id)
            }
            None => Err(EngineError::RunNotFound(run_id.to_owned())),
        }
    }

    async fn cancel(&mut self, run_id: &str, by: Arc<str>) -> Result<Arc<str>, EngineError> {
        let id = self.find(run_id).await?;
        let now = now_ms();
        match self.apply_as(by, &id, |m, o| m.cancel(now, o)) {
            Ok(()) => Ok(id),
            Err(Rejected::RunFinished(state)) => Err(EngineError::Conflict(format!(
                "run {run_id} is already {state}"
            ))),
            Err(e) => Err(EngineError::Conflict(e.to_string())),
        }
    }

    async fn rerun(&mut self, run_id: &str, by: Arc<str>) -> Result<Arc<str>, EngineError> {
        let id = self.find(run_id).await?;
        let now = now_ms();
        match self.apply_as(by, &id, |m, o| m.rerun(now, o)) {
            Ok(()) => {
                if let Some(r) = self.runs.get_mut(&id) {
                    r.finished_at = None;
                }
                Ok(id)
            }
            Err(Rejected::RunNotFinished) => Err(EngineError::Conflict(format!(
                "run {run_id} is still running; cancel it or wait for it to finish"
            ))),
            Err(e) => Err(EngineError::Conflict(e.to_string())),
        }
    }

    fn on_worker_message(&mut self, msg: WorkerMessage) {
        match msg {
            WorkerMessage::Started(s) => {
                let a = s.attempt;
                if self.verify_report(&a).is_err() {
                    return;
                }
                let worker = self.intern_worker(&a.worker_id);
                self.on_task(&a.run_id, &a.task_id, |m, i, o| {
                    m.started(i, a.attempt, worker, s.at_ms, o)
                });
                self.touch(&a.run_id, &a.task_id, a.attempt);
            }
            WorkerMessage::Result(r) => {
                let a = &r.attempt;
                match self.verify_report(a) {
                    Ok(Some(entry)) => self.pending.flush.outgoing.task_acks.push(entry),
                    Ok(None) => {}
                    Err(()) => return,
                }
                let worker = self.intern_worker(&a.worker_id);
                let duration_s = (r.finished_at_ms - r.started_at_ms).max(0) as f64 / 1000.0;
                let attempt = a.attempt;
                let outcome = r.outcome;
                let (run_id, task_id) = (a.run_id.clone(), a.task_id.clone());
                if let Some(u) = &r.usage {
                    self.report_tokens(&run_id, &task_id, attempt, budget::tokens(u));
                }
                let too_large = outcome == Outcome::Succeeded
                    && crate::dag::json_size(&r.output) > self.config.max_output_bytes;
                let (outcome, error) = if too_large {
                    let error = worker_protocol::TaskError {
                        kind: worker_protocol::ErrorKind::InvalidOutput,
                        error_type: None,
                        message: format!(
                            "the output is larger than the limit of {} bytes",
                            self.config.max_output_bytes
                        ),
                        traceback: None,
                        retryable: false,
                        retry_after_s: None,
                    };
                    (Outcome::Failed, Some(error))
                } else {
                    (outcome, r.error)
                };
                let applied = match outcome {
                    Outcome::Succeeded => self.on_task(&run_id, &task_id, |m, i, o| {
                        let success = AttemptSuccess {
                            output: r.output,
                            worker,
                            started_at_ms: r.started_at_ms,
                            finished_at_ms: r.finished_at_ms,
                            usage: r.usage,
                            children: r.children,
                        };
                        m.succeeded(i, attempt, success, o)
                    }),
                    Outcome::Failed => {
                        let e = error.unwrap_or(worker_protocol::TaskError {
                            kind: worker_protocol::ErrorKind::Exception,
                            error_type: None,
                            message: "the worker reported a failure without an error".into(),
                            traceback: None,
                            retryable: true,
                            retry_after_s: None,
                        });
                        let failure = AttemptFailure {
                            failure: TaskFailure {
                                kind: serde_json::to_value(e.kind)
                                    .ok()
                                    .and_then(|v| v.as_str().map(str::to_owned))
                                    .unwrap_or_else(|| "exception".into()),
                                error_type: e.error_type,
                                message: e.message,
                                traceback: e.traceback,
                            },
                            retryable: e.retryable,
                            retry_after_s: e.retry_after_s,
                            started_at_ms: Some(r.started_at_ms),
                            usage: r.usage,
                        };
                        self.on_task(&run_id, &task_id, |m, i, o| {
                            m.failed(i, attempt, failure, Some(worker), r.finished_at_ms, o)
                        })
                    }
                };
                if let Some(handler) = applied {
                    let outcome = if outcome == Outcome::Succeeded {
                        "succeeded"
                    } else {
                        "failed"
                    };
                    metrics::counter!("apex_task_attempts_total", "handler" => handler.clone(), "outcome" => outcome).increment(1);
                    metrics::histogram!("apex_task_duration_seconds", "handler" => handler, "outcome" => outcome).record(duration_s);
                }
            }
            WorkerMessage::Released(r) => {
                let a = r.attempt;
                match self.verify_report(&a) {
                    Ok(Some(entry)) => self.pending.flush.outgoing.task_acks.push(entry),
                    Ok(None) => {}
                    Err(()) => return,
                }
                let now = now_ms();
                self.on_task(&a.run_id, &a.task_id, |m, i, o| {
                    m.released(i, a.attempt, now, o)
                });
            }
            WorkerMessage::Progress(p) => {
                self.count_progress_usage(&p);
                let Some(run) = self.runs.get_mut(p.run_id.as_str()) else {
                    return;
                };
                let Some(i) = run.machine.dag().index_of(&p.task_id) else {
                    return;
                };
                // Streamed text alone says nothing about how far along the task is.
                let text_only =
                    p.text_delta.is_some() && p.progress.is_none() && p.message.is_empty();
                if !text_only {
                    run.progress.insert(i, (p.progress, p.message.clone()));
                }
                if let Some(seen) = run.activity.get_mut(&i) {
                    if seen.0 == p.attempt {
                        seen.1 = now_ms();
                    }
                }
                let mut body = json!({
                    "kind": "progress", "run_id": p.run_id, "task_id": p.task_id, "attempt": p.attempt,
                    "progress": p.progress, "message": p.message, "at_ms": p.at_ms,
                });
                // Live only, never stored per delta: the bus keeps the text so far for
                // clients that join mid-answer, and the final text is in the output.
                if let Some(delta) = p.text_delta {
                    body["text_delta"] = delta.into();
                }
                self.pending
                    .flush
                    .live
                    .push((Some(Arc::clone(&run.id)), None, body));
            }
            WorkerMessage::Log(l) => {
                let (run_id, task_id, attempt) = (l.run_id.clone(), l.task_id.clone(), l.attempt);
                self.touch(&run_id, &task_id, attempt);
                let Some(run) = self.runs.get_mut(run_id.as_str()) else {
                    return;
                };
                let Some(i) = run.machine.dag().index_of(&task_id) else {
                    return;
                };
                let (level, message) =
                    match run
                        .logs
                        .admit(i, attempt, l.message.len(), self.config.log_limits)
                    {
                        Verdict::Keep(len) => (l.level, log_cap::cut(l.message, len)),
                        Verdict::Notice(notice) => ("warning".to_owned(), notice),
                        Verdict::Drop => {
                            metrics::counter!("apex_log_lines_dropped_total").increment(1);
                            return;
                        }
                    };
                self.on_task(&run_id, &task_id, |m, i, o| {
                    m.log(i, attempt, level, message, l.at_ms, o)
                });
            }
            WorkerMessage::Heartbeat(h) => {
                let state = match h.worker.state {
                    worker_protocol::WorkerState::Running => "running",
                    worker_protocol::WorkerState::Draining => "draining",
                };
                let id = h.worker.id.clone();
                let interned = self.intern_worker(&id);
                let joined = !self
                    .workers
                    .get(&id)
                    .is_some_and(|w| w.state == "running" || w.state == "draining");
                self.workers.insert(
                    id.clone(),
                    WorkerSeen {
                        info: h.worker,
                        state,
                        last_heartbeat_ms: h.at_ms.max(now_ms()),
                        id: interned,
                    },
                );
                if joined {
                    tracing::info!(worker = %id, "worker joined");
                }
                self.pending.dirty_workers.insert(id);
            }
            WorkerMessage::WorkerStopped(w) => {
                if let Some(seen) = self.workers.get_mut(&w.worker_id) {
                    seen.state = "stopped";
                    seen.last_heartbeat_ms = w.at_ms;
                    seen.info.in_flight = 0;
                    tracing::info!(worker = %w.worker_id, "worker stopped");
                    self.pending.dirty_workers.insert(w.worker_id);
                }
            }
        }
    }

    /// Counts the usage a progress report states (its attempt's so far) at once, so
    /// budgets and the run's usage move while the call is in flight.
    fn count_progress_usage(&mut self, p: &worker_protocol::Progress) {
        let Some(usage) = &p.usage else {
            return;
        };
        self.on_task(&p.run_id, &p.task_id, |m, i, o| {
            m.report_usage(i, p.attempt, &p.worker_id, usage, o)
        });
    }

    /// Records a sign of life of a running attempt, for its idle timeout.
    fn touch(&mut self, run_id: &str, task_id: &str, attempt: u32) {
        let Some(run) = self.runs.get_mut(run_id) else {
            return;
        };
        let Some(i) = run.machine.dag().index_of(task_id) else {
            return;
        };
        if let Some(seen) = run.activity.get_mut(&i) {
            if seen.0 == attempt {
                seen.1 = now_ms();
            }
        }
    }

    /// The writer learnt where task messages landed in Redis.
    fn on_enqueued(&mut self, landed: Enqueued) {
        for ((run_id, task, attempt), queue, id) in landed {
            let id = match id {
                Ok(id) => id,
                Err(why) => {
                    tracing::warn!(run = %run_id, task, attempt, %why, "Redis refused a task message; failing the task");
                    metrics::counter!("apex_tasks_refused_total", "reason" => "enqueue_failed")
                        .increment(1);
                    let message = format!("Redis refused the task message: {why}");
                    self.refused
                        .push((run_id, task, attempt, refusal("enqueue_failed", message)));
                    continue;
                }
            };
            let current = self.runs.get_mut(&run_id).filter(|r| {
                let t = r.machine.task(task);
                t.attempt == attempt && matches!(t.state, TaskState::Queued | TaskState::Running)
            });
            match current {
                Some(run) => {
                    run.entries.insert(task, (attempt, queue, id));
                }
                // Cancelled (or overtaken) before Redis even answered: no worker may start it.
                None => self.pending.flush.outgoing.task_acks.push((queue, id)),
            }
        }
        self.fail_refused();
    }

    /// Entries whose worker stopped renewing them: the attempts are lost.
    fn on_reclaimed(&mut self, entries: Vec<(String, crate::queue::WorkerEntry)>) {
        let now = now_ms();
        for (queue, entry) in entries {
            self.pending
                .flush
                .outgoing
                .task_acks
                .push((queue, entry.id.clone()));
            let Some(msg) = entry
                .body
                .as_deref()
                .and_then(|b| serde_json::from_slice::<TaskMessage>(b).ok())
            else {
                continue;
            };
            let attempt = msg.attempt;
            if self
                .on_task(&msg.run_id, &msg.task_id, |m, i, o| {
                    m.lost(i, attempt, now, o)
                })
                .is_some()
            {
                metrics::counter!("apex_attempts_lost_total").increment(1);
                tracing::warn!(run = %msg.run_id, task = %msg.task_id, attempt, "attempt lost with its worker; queued again");
            }
        }
    }

    /// Redis lost everything: every queued or running attempt is queued again.
    fn on_redis_reset(&mut self) {
        let now = now_ms();
        let ids: Vec<Arc<str>> = self
            .runs
            .iter()
            .filter(|(_, r)| !r.machine.state().is_terminal())
            .map(|(id, _)| Arc::clone(id))
            .collect();
        let mut requeued = 0;
        for id in ids {
            let run = self.runs.get_mut(&id).expect("listed above");
            run.entries.clear();
            let live: Vec<(u32, u32)> = run
                .machine
                .tasks()
                .iter()
                .enumerate()
                .filter(|(_, t)| matches!(t.state, TaskState::Queued | TaskState::Running))
                .map(|(i, t)| (i as u32, t.attempt))
                .collect();
            for (i, attempt) in live {
                if self
                    .apply(&id, |m, o| m.released(i, attempt, now, o))
                    .is_ok()
                {
                    requeued += 1;
                }
            }
        }
        tracing::warn!(tasks = requeued, "queued again after Redis lost its data");
    }

    /// Fails running attempts that showed no sign of life within their idle timeout.
    fn expire_idle(&mut self, now: i64) {
        let mut expired = Vec::new();
        for (id, run) in &self.runs {
            for (&i, &(attempt, last)) in &run.activity {
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

    /// Checks a worker's report against what the engine itself recorded, since Redis is
    /// not a trusted channel: the queue entry it names must be the one this attempt was
    /// pushed as, and a running attempt's reports must come from the worker that
    /// started it. Answers the entry to acknowledge, if the engine knows it (it does
    /// not yet when the report overtakes the push's confirmation, nor for an attempt
    /// that already ended: those entries are acknowledged when confirmed, or reclaimed).
    /// A report that fails is dropped whole and counted.
    fn verify_report(
        &mut self,
        a: &worker_protocol::AttemptRef,
    ) -> Result<Option<(String, String)>, ()> {
        let Some(run) = self.runs.get(a.run_id.as_str()) else {
            return Ok(None);
        };
        let Some(i) = run.machine.dag().index_of(&a.task_id) else {
            return Ok(None);
        };
        let reject = |reason: &'static str| {
            metrics::counter!("apex_worker_reports_rejected_total", "reason" => reason)
                .increment(1);
            tracing::warn!(run = %a.run_id, task = %a.task_id, attempt = a.attempt, worker = %a.worker_id, reason, "dropped a worker report that does not match the engine's records");
            Err(())
        };
        let task = run.machine.task(i);
        if task.attempt == a.attempt && task.state == TaskState::Running {
            if let Some(w) = &task.worker_id {
                if **w != *a.worker_id {
                    return reject("other_worker");
                }
            }
        }
        match run.entries.get(&i) {
            Some((attempt, queue, id)) if *attempt == a.attempt => {
                if *queue == a.queue && *id == a.msg_id {
                    Ok(Some((queue.clone(), id.clone())))
                } else {
                    reject("foreign_entry")
                }
            }
            _ => Ok(None),
        }
    }

    fn intern_worker(&mut self, id: &str) -> Arc<str> {
        match self.workers.get(id) {
            Some(w) => Arc::clone(&w.id),
            None => Arc::from(id),
        }
    }

    /// Applies a stimulus to one task by id. Returns the task's handler name when the
    /// stimulus was applied; stale and duplicate reports are dropped (and acknowledged).
    fn on_task(
        &mut self,
        run_id: &str,
        task_id: &str,
        f: impl FnOnce(&mut RunMachine, u32, &mut Output) -> Result<(), Rejected>,
    ) -> Option<String> {
        let Some((id, run)) = self.runs.get_key_value(run_id) else {
            tracing::debug!(
                run = run_id,
                task = task_id,
                "report for a run not in memory; dropped"
            );
            return None;
        };
        let Some(i) = run.machine.dag().index_of(task_id) else {
            tracing::debug!(
                run = run_id,
                task = task_id,
                "report for an unknown task; dropped"
            );
            return None;
        };
        let handler = run.machine.dag().task(i).handler.clone();
        let id = Arc::clone(id);
        match self.apply(&id, |m, o| f(m, i, o)) {
            Ok(()) => Some(handler),
            Err(why) => {
                metrics::counter!("apex_stale_reports_total").increment(1);
                tracing::debug!(run = run_id, task = task_id, %why, "report not applied");
                None
            }
        }
    }

    /// [`Core::apply`] for an API request of token `by`: the events it causes name it.
    fn apply_as(
        &mut self,
        by: Arc<str>,
        id: &Arc<str>,
        f: impl FnOnce(&mut RunMachine, &mut Output) -> Result<(), Rejected>,
    ) -> Result<(), Rejected> {
        self.actor = Some(by);
        let result = self.apply(id, f);
        self.actor = None;
        result
    }

    /// Runs `f` on a run's machine and turns what it produced into writes.
    fn apply(
        &mut self,
        id: &Arc<str>,
        f: impl FnOnce(&mut RunMachine, &mut Output) -> Result<(), Rejected>,
    ) -> Result<(), Rejected> {
        let Some(run) = self.runs.get_mut(id) else {
            return Err(Rejected::UnknownTask);
        };
        let result = f(&mut run.machine, &mut self.out);
        let out = std::mem::take(&mut self.out);
        self.absorb(id, &out);
        self.out = out;
        self.out.commands.clear();
        self.out.events.clear();
        self.out.dirty.clear();
        self.out.new_tasks.clear();
        self.out.respecced.clear();
        self.out.run_changed = false;
        self.fail_refused();
        result
    }

    /// Fails the attempts that could not be sent; other tasks and runs go on.
    fn fail_refused(&mut self) {
        while let Some((id, task, attempt, failure)) = self.refused.pop() {
            let now = now_ms();
            let failure = AttemptFailure {
                failure,
                retryable: false,
                retry_after_s: None,
                started_at_ms: None,
                usage: None,
            };
            let _ = self.apply(&id, |m, o| m.failed(task, attempt, failure, None, now, o));
        }
    }

    fn absorb(&mut self, id: &Arc<str>, out: &Output) {
        let Some(run) = self.runs.get_mut(id) else {
            return;
        };
        let now = now_ms();
        for c in &out.commands {
            match *c {
                Command::Dispatch { task, attempt } => {
                    let (input, upstream) = input_bytes(run, task);
                    let limit = self.config.max_task_input_bytes;
                    if input + upstream > limit {
                        let message = format!(
                            "the task's input ({input} bytes) and upstream outputs ({upstream} bytes) come to {} bytes, over the limit of {limit} bytes (--max-task-input-bytes)",
                            input + upstream
                        );
                        metrics::counter!("apex_tasks_refused_total", "reason" => "input_too_large").increment(1);
                        self.refused.push((
                            Arc::clone(id),
                            task,
                            attempt,
                            refusal("input_too_large", message),
                        ));
                        continue;
                    }
                    let (queue, json) = task_message(run, task, attempt, now);
                    let attempt = (Arc::clone(id), task, attempt);
                    self.pending.flush.outgoing.tasks.push(OutTask {
                        queue,
                        json,
                        attempt,
                    });
                }
                Command::ScheduleRetry {
                    task,
                    attempt,
                    delay_ms,
                } => {
                    metrics::counter!("apex_task_retries_total").increment(1);
                    // Jitter spreads retries of tasks that failed together.
                    let jitter = 1.0 + rand::random::<f64>() * 0.2;
                    let due = now + (delay_ms as f64 * jitter) as i64;
                    self.timers
                        .push(Reverse((due, Arc::clone(id), task, attempt)));
                }
                Command::CancelAttempt { task, attempt } => {
                    // Not yet read by any worker: delete it, so none ever starts it.
                    if let Some((_, queue, entry)) =
                        run.entries.remove(&task).filter(|e| e.0 == attempt)
                    {
                        self.pending.flush.outgoing.task_acks.push((queue, entry));
                    }
                    let msg = ControlMessage::Cancel {
                        v: PROTOCOL_VERSION,
                        run_id: id.to_string(),
                        task_id: run.machine.dag().task(task).id.clone(),
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
        let dag = run.machine.dag();
        for e in &out.events {
            let (task_id, kind, state, data) = match &e.kind {
                EventKind::Task { task, state } => (
                    Some(dag.task(*task).id.clone()),
                    "task",
                    Some(state.as_str()),
                    e.error
                        .as_ref()
                        .map(|f| serde_json::to_value(f).unwrap_or(Value::Null)),
                ),
                EventKind::Run { state } => (None, "run", Some(state.as_str()), None),
                EventKind::Log {
                    task,
                    level,
                    message,
                } => (
                    Some(dag.task(*task).id.clone()),
                    "log",
                    None,
                    Some(json!({"level": level, "message": message})),
                ),
            };
            let row = EventRow {
                run_id: id.to_string(),
                seq: e.seq,
                task_id,
                kind: kind.to_owned(),
                state: state.map(str::to_owned),
                attempt: e.attempt,
                worker_id: e.worker_id.as_deref().map(str::to_owned),
                at_ms: e.at_ms,
                data,
                by: self.actor.as_deref().map(str::to_owned),
            };
            self.pending
                .flush
                .live
                .push((Some(Arc::clone(id)), Some(e.seq), views::event(&row)));
            self.pending.flush.batch.events.push(row);
            if let EventKind::Task { task, state } = &e.kind {
                if state.is_terminal() || *state == TaskState::Ready {
                    run.progress.remove(task);
                }
            }
            if let EventKind::Run { state } = &e.kind {
                run.finished_at = state.is_terminal().then(Instant::now);
                if state.is_terminal() {
                    metrics::counter!("apex_runs_finished_total", "state" => state.as_str())
                        .increment(1);
                }
            }
        }
        for &t in &out.dirty {
            self.pending.dirty_tasks.insert((Arc::clone(id), t));
            let task = run.machine.task(t);
            match task.state {
                TaskState::Queued => {}
                TaskState::Running => {
                    let attempt = task.attempt;
                    if run.machine.dag().task(t).idle_timeout_s.is_some()
                        && run.activity.get(&t).is_none_or(|a| a.0 != attempt)
                    {
                        run.activity.insert(t, (attempt, now));
                    }
                }
                _ => {
                    run.entries.remove(&t);
                    run.activity.remove(&t);
                    run.output_sizes.remove(&t);
                    run.logs.forget(t);
                    if self.limiter.holds(id, t) {
                        self.limiter.release(id, t);
                        // A freed slot may be what a task of any run waits for.
                        self.admit_due = true;
                    }
                }
            }
        }
        if !out.dirty.is_empty() && run.machine.has_waiting() {
            self.waiting_runs.insert(Arc::clone(id));
            self.admit_due = true;
        }
        for &t in &out.new_tasks {
            self.pending.new_tasks.push((Arc::clone(id), t));
        }
        for &t in &out.respecced {
            self.pending.respecced.insert((Arc::clone(id), t));
        }
        if out.run_changed {
            self.pending.dirty_runs.insert(Arc::clone(id));
        }
    }

    fn fire_timers(&mut self) {
        let now = now_ms();
        if self.admit_wake_ms.is_some_and(|w| w <= now) {
            self.admit_wake_ms = None;
            self.admit_due = true;
        }
        while let Some(Reverse((due, _, _, _))) = self.timers.peek() {
            if *due > now {
                break;
            }
            let Reverse((_, id, task, attempt)) = self.timers.pop().expect("peeked");
            // A timer whose attempt was overtaken (cancel, rerun) is simply stale.
            let _ = self.apply(&id, |m, o| m.retry_due(task, attempt, now, o));
        }
    }

    /// Dispatches what waiting tasks their runs' limits, budgets and the shared limits
    /// now allow.
    fn admit_waiting(&mut self) {
        if !std::mem::take(&mut self.admit_due) {
            return;
        }
        let runs: Vec<Arc<str>> = self.waiting_runs.iter().cloned().collect();
        for id in runs {
            let now = now_ms();
            // Out of `self` while the run's machine asks it: `apply` borrows `self`.
            let mut limiter = std::mem::take(&mut self.limiter);
            let _ = self.apply(&id, |m, o| {
                let mut gate = SharedLimits {
                    limiter: &mut limiter,
                    run: &id,
                    now_ms: now,
                };
                m.admit(now, &mut gate, o);
                Ok(())
            });
            self.limiter = limiter;
            if !self.runs.get(&id).is_some_and(|r| r.machine.has_waiting()) {
                self.waiting_runs.remove(&id);
            }
        }
        if let Some(at) = self.limiter.take_wake() {
            self.admit_wake_ms = Some(self.admit_wake_ms.map_or(at, |w| w.min(at)));
        }
    }

    /// Counts what an attempt reported against the token windows of its keys.
    fn report_tokens(&mut self, run_id: &str, task_id: &str, attempt: u32, tokens: u64) {
        if let Some((id, run)) = self.runs.get_key_value(run_id) {
            if let Some(i) = run.machine.dag().index_of(task_id) {
                self.limiter.report_tokens(id, i, attempt, tokens);
            }
        }
    }

    fn housekeeping(&mut self) {
        let now = now_ms();
        self.expire_idle(now);
        let lost_after = self.config.worker_lost_after.as_millis() as i64;
        for (id, w) in self.workers.iter_mut() {
            let silent_for = now - w.last_heartbeat_ms;
            let limit = lost_after.max((w.info.heartbeat_interval_s * 3000.0) as i64);
            if matches!(w.state, "running" | "draining") && silent_for > limit {
                tracing::warn!(worker = %id, silent_ms = silent_for, "worker lost: no heartbeat");
                w.state = "lost";
                self.pending.dirty_workers.insert(id.clone());
            }
        }
        let queues = self.queue_stats();
        self.reap_idle_queues(now);
        if queues != self.last_queues {
            self.pending
                .flush
                .live
                .push((None, None, json!({"kind": "queues", "queues": queues})));
            self.last_queues = queues;
        }
        let keep = self.config.keep_finished;
        self.runs
            .retain(|_, r| r.finished_at.is_none_or(|t| t.elapsed() < keep));
        metrics::gauge!("apex_runs_in_memory").set(self.runs.len() as f64);
    }

    /// Work, workers and desired workers per queue. Evaluates each queue's autoscaler,
    /// so it is called at least once a second (housekeeping) to let cooldowns pass.
    fn queue_stats(&mut self) -> Vec<QueueStats> {
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
        for w in self.workers.values().filter(|w| w.state == "running") {
            for q in &w.info.queues {
                touch(&mut by_queue, q);
            }
        }
        let live = [TaskState::Ready, TaskState::Queued, TaskState::Running];
        for run in self.runs.values() {
            let c = run.machine.counts();
            if live.iter().all(|s| c[*s as usize] == 0) {
                continue;
            }
            let dag = run.machine.dag();
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
        let now = now_ms();
        for s in by_queue.values_mut() {
            if s.depth > 0
                || s.running > 0
                || self
                    .workers
                    .values()
                    .any(|w| w.state == "running" && w.info.queues.contains(&s.name))
            {
                self.queues_seen.insert(s.name.clone(), now);
            }
            let serving: Vec<&WorkerSeen> = self
                .workers
                .values()
                .filter(|w| w.state == "running" && w.info.queues.contains(&s.name))
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

    /// Turns what this batch changed into one [`Flush`] for the writer.
    async fn flush(&mut self) {
        let mut p = std::mem::take(&mut self.pending);
        let new: HashSet<Arc<str>> = p.new_runs.iter().cloned().collect();
        for id in &p.new_runs {
            let Some(run) = self.runs.get(id) else {
                continue;
            };
            let dag = run.machine.dag();
            let tasks = (0..dag.len() as u32)
                .map(|i| (dag.task(i).clone(), run.task_row(i)))
                .collect();
            p.flush.batch.new_runs.push(NewRun {
                run: run.row(),
                tasks,
            });
        }
        for (id, i) in &p.new_tasks {
            if new.contains(id) {
                continue;
            }
            if let Some(run) = self.runs.get(id) {
                let spec = run.machine.dag().task(*i).clone();
                p.flush.batch.new_tasks.push((spec, run.task_row(*i)));
            }
        }
        for (id, i) in &p.respecced {
            if new.contains(id) {
                continue;
            }
            if let Some(run) = self.runs.get(id) {
                let spec = run.machine.dag().task(*i).clone();
                p.flush.batch.specs.push((id.to_string(), spec));
            }
        }
        for (id, i) in &p.dirty_tasks {
            if new.contains(id) {
                continue;
            }
            if let Some(run) = self.runs.get(id) {
                p.flush.batch.tasks.push(run.task_row(*i));
            }
        }
        for id in &p.dirty_runs {
            let Some(run) = self.runs.get(id) else {
                continue;
            };
            let row = run.row();
            let kind = if new.contains(id) {
                "run_created"
            } else {
                "run_updated"
            };
            p.flush.live.push((
                None,
                None,
                json!({"kind": kind, "run": views::run_summary(&row)}),
            ));
            if !new.contains(id) {
                p.flush.batch.runs.push(row);
            }
        }
        for id in &p.dirty_workers {
            let Some(w) = self.workers.get(id) else {
                continue;
            };
            let info = serde_json::to_value(&w.info).unwrap_or(Value::Null);
            p.flush.live.push((None, None, json!({"kind": "worker", "worker": worker_view(&info, w.state, w.last_heartbeat_ms)})));
            p.flush.batch.workers.push(WorkerRow {
                id: id.clone(),
                info,
                state: w.state.to_owned(),
                last_heartbeat_ms: w.last_heartbeat_ms,
            });
        }
        for (reply, id) in p.replies {
            match self.runs.get(&id) {
                Some(run) => p.flush.replies.push((reply, run.row())),
                None => {
                    let _ = reply.send(Err(EngineError::RunNotFound(id.to_string())));
                }
            }
        }
        if p.flush.is_empty() {
            return;
        }
        if self.flush_tx.send(p.flush).await.is_err() {
            tracing::error!("the writer stopped; writes of this batch are lost from memory but not from the results stream");
        }
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

/// Answers a cancel or re-run request with an error.
fn reply_to(input: Input, error: impl FnOnce(&str) -> EngineError) {
    if let Input::Cancel { run_id, reply, .. } | Input::Rerun { run_id, reply, .. } = input {
        let _ = reply.send(Err(error(&run_id)));
    }
}

/// A failure of an attempt that never reached a worker.
fn refusal(kind: &str, message: String) -> TaskFailure {
    TaskFailure {
        kind: kind.to_owned(),
        error_type: None,
        message,
        traceback: None,
    }
}

/// Encoded bytes of a task's input and of the upstream outputs its message carries.
fn input_bytes(run: &mut ActiveRun, task: u32) -> (usize, usize) {
    let dag = run.machine.dag();
    let input = crate::dag::json_size(&dag.task(task).input);
    let mut upstream = 0;
    for &p in dag.parents(task) {
        upstream += *run.output_sizes.entry(p).or_insert_with(|| {
            run.machine
                .task(p)
                .output
                .as_ref()
                .map_or(4, crate::dag::json_size)
        });
    }
    (input, upstream)
}

/// The task message for one attempt, and the queue it goes to.
fn task_message(run: &ActiveRun, task: u32, attempt: u32, now: i64) -> (String, String) {
    let dag = run.machine.dag();
    let spec = dag.task(task);
    let upstream = dag
        .parents(task)
        .iter()
        .map(|&p| {
            (
                dag.task(p).id.clone(),
                run.machine.task(p).output.clone().unwrap_or(Value::Null),
            )
        })
        .collect();
    let queue = dag.queue_of(task).to_owned();
    let msg = TaskMessage {
        v: PROTOCOL_VERSION,
        kind: TaskKind::Task,
        run_id: run.id.to_string(),
        task_id: spec.id.clone(),
        attempt,
        handler: spec.handler.clone(),
        input: spec.input.clone(),
        upstream,
        queue: queue.clone(),
        timeout_s: spec.timeout_s,
        idempotency_key: TaskMessage::idempotency_key_for(&run.id, &spec.id, attempt),
        priority: spec.priority,
        enqueued_at_ms: now,
        agent: spec
            .agent
            .as_ref()
            .and_then(|a| dag.options.agents.get(a).map(|s| s.config(a))),
    };
    (
        queue,
        serde_json::to_string(&msg).expect("task message serialises"),
    )
}
