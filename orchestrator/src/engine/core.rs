//! The core loop: owns every active run, applies inputs in batches, and emits one
//! [`Flush`] per batch. It never waits on Redis; it waits on the store only to load a
//! run that is not in memory (recovery, a retry of an old run).

use super::active::{self, ActiveRun};
use super::fleet::{QueueStats, WorkerSeen};
use super::flush::Pending;
use super::limiter::Limiter;
use super::parking::Parking;
use super::writer::{Enqueued, Flush};
use super::{EngineConfig, EngineError, Input};
use crate::api_types::{DeadLetterEvent, LiveEvent, Queue, QueuesEvent};
use crate::autoscale::Autoscaler;
use crate::dag::Dag;
use crate::queue::AttemptKey;
use crate::state_machine::{Output, Rejected, RunMachine, TaskFailure};
use crate::store::Store;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// A retry of an attempt, due at `due_ms` (engine clock). Ordered by due time first,
/// so a min-heap (`Reverse<Timer>`) pops the earliest.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Timer {
    pub due_ms: i64,
    pub key: AttemptKey,
}

/// An attempt that must fail without running, and why.
pub(super) struct Refusal {
    pub key: AttemptKey,
    pub failure: TaskFailure,
}

/// Inputs handled before a flush; bounds the latency a long burst adds.
const MAX_BATCH_INPUTS: usize = 256;

/// Tasks resolved or admitted per flush. A run that makes more ready at once (100,000
/// roots) is dispatched in slices of this many, each sent once the writer has taken
/// the flushes before it, so the memory its messages, events and rows hold at once
/// does not grow with the width of the run. With 100,000 roots in flight this many
/// keeps the server's peak at 241–256 MB, and a 20,000-task run goes in two slices: each
/// later slice costs the writer an update of every task in it from `pending` to `queued`
/// (benches/NOTES.md, "Huge pages, and a wider slice").
pub(super) const DISPATCH_SLICE: usize = 16_384;

/// Most of a run's deferred tasks that may wait in its queue at once. Slices after
/// the first go no faster than the run's workers start them, so a small run submitted
/// during a run of 100,000 waits behind a few thousand of its tasks, not the whole run
/// (benches/NOTES.md, "A small run beside a wide one, held to a backlog").
pub(super) const RUN_BACKLOG: usize = 4_096;

/// The single owner of every active run and of the engine's other in-memory state.
pub(super) struct Core {
    pub(super) store: Arc<dyn Store>,
    pub(super) config: EngineConfig,
    pub(super) flush_tx: mpsc::Sender<Flush>,
    pub(super) runs: HashMap<Arc<str>, ActiveRun>,
    pub(super) timers: BinaryHeap<Reverse<Timer>>,
    /// Decision deadlines of waiting tasks (see [`super::decisions`]).
    pub(super) deadlines: BinaryHeap<Reverse<super::decisions::Deadline>>,
    pub(super) workers: HashMap<String, WorkerSeen>,
    pub(super) pending: Pending,
    /// Reused for every stimulus, to avoid allocating per task.
    pub(super) out: Output,
    /// Queue stats last published, to publish only changes.
    pub(super) last_queues: Vec<QueueStats>,
    /// Entry ids of task messages, reported by the writer once Redis assigned them.
    pub(super) enqueued: mpsc::UnboundedReceiver<Enqueued>,
    /// Desired workers per queue, remembered between evaluations for their cooldowns.
    pub(super) autoscalers: HashMap<String, Autoscaler>,
    /// Limits shared by every run (agents, concurrency keys).
    pub(super) limiter: Limiter,
    /// Runs with tasks waiting in `ready` for a limit or budget: which to visit next,
    /// and which wait on a shared key.
    pub(super) parking: Parking,
    /// The run admission is visiting: its own dispatches do not make it ready again.
    pub(super) visiting: Option<Arc<str>>,
    /// Tasks the sweep admitted, which a wake should have (see [`Parking::sweep`]).
    pub(super) sweep_admitted: u64,
    /// Something changed that may let a waiting task go: try admitting at the batch end.
    pub(super) admit_due: bool,
    /// A pass of admission ran out of room: carry on once the writer caught up.
    pub(super) admit_backlog: bool,
    /// Runs with tasks deferred for lack of room in a flush, in the order they are
    /// served.
    pub(super) deferred_runs: super::admission::DeferredRuns,
    /// Tasks the current batch may still resolve or admit (see [`DISPATCH_SLICE`]).
    pub(super) room: usize,
    /// Attempts that must fail without running, found while turning commands into
    /// writes (a message too large to send, or one Redis refused); failed as soon as
    /// the stimulus that dispatched them is done.
    pub(super) refused: Vec<Refusal>,
    /// Queue names in use, with when they last were (tasks, runs or workers on them).
    pub(super) queues_seen: HashMap<String, i64>,
    /// The loop's own input, for work done off the loop to come back (weak, so the
    /// loop still ends when every handle is gone).
    pub(super) inbox: mpsc::WeakSender<Input>,
    /// The API token whose request is being applied (submit, cancel, retry), recorded
    /// as `by` on the events it causes; `None` for everything else.
    pub(super) actor: Option<Arc<str>>,
}

/// Attempts the store said were queued or running when the engine started.
pub(super) type InFlight = Vec<AttemptKey>;

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
        let room = config.dispatch_slice.max(1);
        Self {
            store,
            config,
            flush_tx,
            runs: HashMap::new(),
            timers: BinaryHeap::new(),
            deadlines: BinaryHeap::new(),
            workers: HashMap::new(),
            pending: Pending::default(),
            out: Output::default(),
            last_queues: Vec::new(),
            enqueued,
            autoscalers,
            limiter,
            parking: Parking::default(),
            visiting: None,
            sweep_admitted: 0,
            admit_due: true,
            admit_backlog: false,
            deferred_runs: Default::default(),
            room,
            refused: Vec::new(),
            queues_seen: HashMap::new(),
            inbox,
            actor: None,
        }
    }

    /// The loop: one batch of inputs (or a timer, or the tick), then one flush.
    pub async fn run(
        &mut self,
        mut rx: mpsc::Receiver<Input>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next_timer = [
                self.timers.peek().map(|Reverse(t)| t.due_ms),
                self.deadlines.peek().map(|Reverse(d)| d.due_ms),
                self.parking.next_wake(),
                self.backlog_due(),
            ]
            .into_iter()
            .flatten()
            .min();
            let wait = next_timer.map(|due| (due - self.config.clock.now_ms()).max(0) as u64);
            let timer = async {
                match wait {
                    Some(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
                    None => std::future::pending().await,
                }
            };
            // Ordering rule 1: shutdown wins over everything (`biased`), so a busy input
            // stream cannot delay it; then inputs, the writer's confirmations, timers
            // and the housekeeping tick.
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                // Rule 2: inputs are handled in batches of up to MAX_BATCH_INPUTS, so a
                // burst becomes one flush (one commit) instead of one per input.
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
            // Rule 3: due retries fire after the batch's inputs; a timer whose attempt a
            // cancel or re-run overtook is stale, and the machine refuses it.
            self.fire_timers();
            // Rule 4: waiting tasks are admitted once per batch, after the inputs and
            // timers that may free slots or add waiting tasks, in one pass that visits
            // only the runs something freed (see `parking`).
            self.admit_waiting();
            // Rule 5: what earlier batches deferred for lack of room goes next, once
            // the writer has taken every flush before (see DISPATCH_SLICE).
            self.release_deferred();
            // Rule 6: at most one flush per batch, and only then is anything sent,
            // stored or answered (the writer commits before it pushes or replies).
            self.flush().await;
            self.room = self.config.dispatch_slice.max(1);
        }
        // Rule 7: what the last batch decided is still handed to the writer on shutdown.
        self.flush().await;
    }

    pub(super) async fn handle(&mut self, input: Input) {
        match input {
            Input::Submit {
                dag,
                reused,
                by,
                reply,
            } => {
                if let Err(e) = self.admit_queues(&dag) {
                    let _ = reply.send(Err(e));
                    return;
                }
                let id = self.submit(dag, reused, by);
                self.pending.replies.push((reply, id));
            }
            // A run no longer in memory is loaded off the loop, so a big old run does not
            // stall scheduling for every other run; the request comes back as `Loaded`.
            Input::Cancel { ref run_id, .. }
            | Input::Rerun { ref run_id, .. }
            | Input::Decide { ref run_id, .. }
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
            Input::Decide {
                run_id,
                task_id,
                decision,
                by,
                reply,
            } => match self.decide(&run_id, &task_id, decision, by) {
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
                    let event = LiveEvent::DeadLetter(DeadLetterEvent {
                        letter,
                        at_ms: self.config.clock.now_ms(),
                        seq: 0,
                        stored_at_ms: None,
                    });
                    self.pending.flush.live.push((None, None, event));
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

    pub(super) fn submit(
        &mut self,
        dag: Arc<Dag>,
        reused: Vec<(u32, Option<serde_json::Value>)>,
        by: Arc<str>,
    ) -> Arc<str> {
        let id: Arc<str> = Arc::from(uuid::Uuid::now_v7().to_string().as_str());
        let now = self.config.clock.now_ms();
        let run = ActiveRun {
            id: Arc::clone(&id),
            machine: if reused.is_empty() {
                RunMachine::new(dag)
            } else {
                RunMachine::reusing(dag, reused)
            },
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
    pub(super) fn load_then(&self, next: Input) {
        let (Input::Cancel { run_id, .. }
        | Input::Rerun { run_id, .. }
        | Input::Decide { run_id, .. }) = &next
        else {
            return;
        };
        let run_id = run_id.clone();
        let store = Arc::clone(&self.store);
        let inbox = self.inbox.clone();
        let clock = self.config.clock.clone();
        tokio::spawn(async move {
            let run = active::load(store.as_ref(), &run_id, clock.now_ms())
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

    pub(super) async fn find(&mut self, run_id: &str) -> Result<Arc<str>, EngineError> {
        if let Some((id, _)) = self.runs.get_key_value(run_id) {
            return Ok(Arc::clone(id));
        }
        let now = self.config.clock.now_ms();
        match active::load(self.store.as_ref(), run_id, now).await? {
            Some(run) => {
                let id = Arc::clone(&run.id);
                self.runs.insert(Arc::clone(&id), run);
                Ok(id)
            }
            None => Err(EngineError::RunNotFound(run_id.to_owned())),
        }
    }

    pub(super) async fn cancel(
        &mut self,
        run_id: &str,
        by: Arc<str>,
    ) -> Result<Arc<str>, EngineError> {
        let id = self.find(run_id).await?;
        let now = self.config.clock.now_ms();
        match self.apply_as(by, &id, |m, o| m.cancel(now, o)) {
            Ok(()) => Ok(id),
            Err(Rejected::RunFinished(state)) => Err(EngineError::Conflict(format!(
                "run {run_id} is already {state}"
            ))),
            Err(e) => Err(EngineError::Conflict(e.to_string())),
        }
    }

    pub(super) async fn rerun(
        &mut self,
        run_id: &str,
        by: Arc<str>,
    ) -> Result<Arc<str>, EngineError> {
        let id = self.find(run_id).await?;
        let now = self.config.clock.now_ms();
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

    /// Applies a stimulus to one task by id. Returns the task's handler name when the
    /// stimulus was applied; stale and duplicate reports are dropped (and acknowledged).
    pub(super) fn on_task(
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
    pub(super) fn apply_as(
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
    pub(super) fn apply(
        &mut self,
        id: &Arc<str>,
        f: impl FnOnce(&mut RunMachine, &mut Output) -> Result<(), Rejected>,
    ) -> Result<(), Rejected> {
        let Some(run) = self.runs.get_mut(id) else {
            return Err(Rejected::UnknownTask);
        };
        self.out.room = Some(self.room);
        let result = f(&mut run.machine, &mut self.out);
        self.room = self.out.room.unwrap_or(self.room);
        if run.machine.has_deferred() {
            self.deferred_runs.insert(id);
        }
        let out = std::mem::take(&mut self.out);
        self.absorb(id, &out);
        self.out = out;
        self.out.reset();
        self.fail_refused();
        result
    }

    pub(super) fn fire_timers(&mut self) {
        let now = self.config.clock.now_ms();
        while let Some(Reverse(timer)) = self.timers.peek() {
            if timer.due_ms > now {
                break;
            }
            let Reverse(Timer { key, .. }) = self.timers.pop().expect("peeked");
            // A timer whose attempt was overtaken (cancel, rerun) is simply stale.
            let _ = self.apply(&key.run, |m, o| m.retry_due(key.task, key.attempt, now, o));
        }
        self.fire_deadlines(now);
    }

    pub(super) fn housekeeping(&mut self) {
        let now = self.config.clock.now_ms();
        self.expire_idle(now);
        self.expire_silent_workers(now);
        let queues = self.queue_stats();
        self.reap_idle_queues(now);
        if queues != self.last_queues {
            let event = LiveEvent::Queues(QueuesEvent {
                queues: queues.iter().map(Queue::from).collect(),
                seq: 0,
                stored_at_ms: None,
            });
            self.pending.flush.live.push((None, None, event));
            self.last_queues = queues;
        }
        self.sweep(super::admission::SWEEP_PER_TICK);
        let keep = self.config.keep_finished.as_millis() as i64;
        self.runs
            .retain(|_, r| r.finished_at.is_none_or(|t| now - t < keep));
        metrics::gauge!("apex_runs_in_memory").set(self.runs.len() as f64);
    }
}

/// Answers a cancel or re-run request with an error.
fn reply_to(input: Input, error: impl FnOnce(&str) -> EngineError) {
    if let Input::Cancel { run_id, reply, .. }
    | Input::Rerun { run_id, reply, .. }
    | Input::Decide { run_id, reply, .. } = input
    {
        let _ = reply.send(Err(error(&run_id)));
    }
}
