//! The async shell around the pure core: it feeds stimuli to each run's
//! [`RunMachine`](crate::state_machine::RunMachine) and carries out what comes back.
//!
//! ```text
//! API ──Input──▶ core loop ──Flush──▶ writer: store.apply ─▶ Redis pipeline ─▶ bus ─▶ replies
//!                   ▲ (one task owns every active run; no locks)
//! results reader ───┘ (XREADGROUP on the results stream, parsed, in batches)
//! ```
//!
//! The core handles a batch of inputs, then hands one [`writer::Flush`] to the writer.
//! The writer merges whatever flushes queued up meanwhile into one transaction (group
//! commit), and only after it commits does it push tasks to Redis, acknowledge results
//! and answer callers. So nothing is dispatched or acknowledged that the store does not
//! know, and the engine keeps scheduling while the previous batch commits.

mod active;
mod admission;
#[cfg(test)]
mod admission_tests;
mod clock;
mod core;
mod decisions;
mod fleet;
mod flush;
mod limiter;
mod log_cap;
mod parking;
mod reader;
mod recovery;
mod redis_watch;
mod reports;
mod runtime;
mod writer;

pub use self::clock::Clock;
pub use self::decisions::Decision;
pub use self::fleet::{worker_view, QueueStats};
pub use self::log_cap::LogLimits;
pub use self::runtime::EngineRuntime;
pub use self::writer::{Stuck, WriterHealth};

use crate::dag::Dag;
use crate::live::Bus;
use crate::queue::RedisQueue;
use crate::store::{RunRow, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use worker_protocol::WorkerMessage;

/// Why the engine refused a request.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("run {0} not found")]
    RunNotFound(String),
    /// The run has no task of that id: `(run, task)`.
    #[error("run {0} has no task {1:?}")]
    TaskNotFound(String, String),
    /// The request does not fit the run's state (e.g. cancelling a finished run).
    #[error("{0}")]
    Conflict(String),
    /// A decision that does not fit the task (e.g. a raise that lowers a limit).
    #[error("{0}")]
    InvalidDecision(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The submission breaks a rule only the engine can check (e.g. the queue cap).
    #[error("{0}")]
    Invalid(crate::dag::ValidationErrors),
    /// The engine is shutting down (or crashed).
    #[error("the engine is not running")]
    Stopped,
    /// The engine could not start: Redis would not show its queues or results stream.
    #[error("cannot start the engine: {what}: {source}")]
    QueueStartup {
        /// What the engine was reading.
        what: &'static str,
        source: crate::queue::QueueError,
    },
}

/// Settings of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Consumer name on the results stream.
    pub consumer: String,
    /// Results read per `XREADGROUP`.
    pub read_batch: usize,
    /// A worker silent for this long is marked lost.
    pub worker_lost_after: Duration,
    /// Finished runs stay in memory this long, so a retry needs no reload.
    pub keep_finished: Duration,
    /// A task entry its worker has not renewed for this long is taken over and run
    /// again: its worker is gone. Must exceed the workers' lease renewal interval.
    pub lease_timeout: Duration,
    /// Largest task output accepted, encoded as JSON; larger fails the attempt.
    pub max_output_bytes: usize,
    /// Largest input plus upstream outputs a task message may carry; a task over it
    /// fails before dispatch (`input_too_large`) instead of stalling Redis.
    pub max_task_input_bytes: usize,
    /// Tasks resolved or admitted per flush; a run with more ready at once is
    /// dispatched in slices of this many (see `core::DISPATCH_SLICE`).
    pub dispatch_slice: usize,
    /// Most of one run's tasks released from its deferred slices that may wait in its
    /// queue at once (see `Core::release_deferred`).
    pub run_backlog: usize,
    /// Log lines and bytes one attempt may store.
    pub log_limits: log_cap::LogLimits,
    /// Most distinct queue names in use at once; a submission that would pass it is
    /// refused.
    pub max_queues: usize,
    /// A queue with no task, run or worker for this long is removed (stream, group).
    pub queue_idle: Duration,
    /// How many workers each queue's work calls for.
    pub autoscale: crate::autoscale::Policy,
    /// Queues known from the start, so they report a desired worker count (at least
    /// the policy's minimum) before any task or worker names them.
    pub queues: Vec<String>,
    /// The operator's limits per key, which tighten every run's.
    pub ceilings: crate::ceilings::Ceilings,
    /// Where the engine reads the time.
    pub clock: Clock,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            consumer: "orchestrator".into(),
            read_batch: 2_000,
            worker_lost_after: Duration::from_secs(10),
            keep_finished: Duration::from_secs(300),
            lease_timeout: Duration::from_secs(7),
            max_output_bytes: 16 << 20,
            max_task_input_bytes: 64 << 20,
            dispatch_slice: core::DISPATCH_SLICE,
            run_backlog: core::RUN_BACKLOG,
            log_limits: log_cap::LogLimits::default(),
            max_queues: 1_000,
            queue_idle: Duration::from_secs(600),
            autoscale: crate::autoscale::Policy::default(),
            queues: Vec::new(),
            ceilings: crate::ceilings::Ceilings::default(),
            clock: Clock::System,
        }
    }
}

/// Where the engine answers a request about a run, once its writes are stored.
pub(crate) type RunReply = oneshot::Sender<Result<RunRow, EngineError>>;

/// Something for the core loop to handle.
pub(crate) enum Input {
    /// `by` in these three: the API token asking, recorded on the events it causes.
    Submit {
        dag: Arc<Dag>,
        /// Tasks that start succeeded with these outputs (a re-run from tasks).
        reused: Vec<(u32, Option<serde_json::Value>)>,
        by: Arc<str>,
        reply: RunReply,
    },
    Cancel {
        run_id: String,
        by: Arc<str>,
        reply: RunReply,
    },
    Rerun {
        run_id: String,
        by: Arc<str>,
        reply: RunReply,
    },
    /// A person's decision about one task.
    Decide {
        run_id: String,
        task_id: String,
        decision: Decision,
        by: Arc<str>,
        reply: RunReply,
    },
    /// Entries read from the results stream: id and parsed message (or why not).
    /// The permit holds the batch's bytes against the reader's budget until handled.
    Worker(
        Vec<(String, Result<WorkerMessage, String>)>,
        tokio::sync::OwnedSemaphorePermit,
    ),
    QueueStats {
        reply: oneshot::Sender<Vec<QueueStats>>,
    },
    /// Entries taken over from workers that stopped renewing them: `(queue, entry)`.
    Reclaimed(Vec<(String, crate::queue::WorkerEntry)>),
    /// Redis lost its data: everything queued or running must be queued again.
    RedisReset,
    /// Messages copied to the dead-letter stream, as stored there.
    DeadLetters(Vec<serde_json::Value>),
    /// A stored run loaded off the loop for `then` (a cancel or re-run of it).
    Loaded {
        run: Result<Option<Box<active::ActiveRun>>, crate::store::StoreError>,
        then: Box<Input>,
    },
    /// Progress of live tasks, which is not stored.
    Progress {
        run_id: String,
        reply: oneshot::Sender<Vec<(String, Option<f64>, String)>>,
    },
    /// Drops a finished run from memory before it is deleted; false if it is active.
    Forget {
        run_id: String,
        reply: oneshot::Sender<bool>,
    },
}

/// The API's handle on the engine.
#[derive(Clone)]
pub struct EngineHandle {
    tx: mpsc::Sender<Input>,
    writer: WriterHealth,
    generation: crate::store::Generation,
}

impl EngineHandle {
    /// Moves on every commit of the writer (and every run deletion): what cached reads
    /// of stored runs are checked against.
    pub fn generation(&self) -> &crate::store::Generation {
        &self.generation
    }

    /// The write that keeps failing, if one does (for readiness).
    pub fn writer_stuck(&self) -> Option<Stuck> {
        self.writer.stuck()
    }

    /// Another orchestrator leads: write nothing more, not even what is in memory.
    pub fn abandon(&self) {
        self.writer.abandon();
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Input,
    ) -> Result<T, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)
    }

    /// Starts a run of a validated DAG on behalf of token `by`; answers once it is
    /// stored.
    pub async fn submit(&self, dag: Dag, by: &str) -> Result<RunRow, EngineError> {
        self.submit_reusing(dag, Vec::new(), by).await
    }

    /// Starts a run whose tasks in `reused` start succeeded with the given outputs and
    /// are never dispatched (a re-run from tasks); answers once it is stored.
    pub async fn submit_reusing(
        &self,
        dag: Dag,
        reused: Vec<(u32, Option<serde_json::Value>)>,
        by: &str,
    ) -> Result<RunRow, EngineError> {
        self.ask(|reply| Input::Submit {
            dag: Arc::new(dag),
            reused,
            by: Arc::from(by),
            reply,
        })
        .await?
    }

    /// Cancels a running run on behalf of token `by`.
    pub async fn cancel(&self, run_id: &str, by: &str) -> Result<RunRow, EngineError> {
        self.ask(|reply| Input::Cancel {
            run_id: run_id.to_owned(),
            by: Arc::from(by),
            reply,
        })
        .await?
    }

    /// Runs a finished run's failed, skipped and cancelled tasks again, on behalf of
    /// token `by`.
    pub async fn rerun(&self, run_id: &str, by: &str) -> Result<RunRow, EngineError> {
        self.ask(|reply| Input::Rerun {
            run_id: run_id.to_owned(),
            by: Arc::from(by),
            reply,
        })
        .await?
    }

    /// Applies a person's `decision` about one task, on behalf of token `by`; answers
    /// once it is stored.
    pub async fn decide(
        &self,
        run_id: &str,
        task_id: &str,
        decision: Decision,
        by: &str,
    ) -> Result<RunRow, EngineError> {
        self.ask(|reply| Input::Decide {
            run_id: run_id.to_owned(),
            task_id: task_id.to_owned(),
            decision,
            by: Arc::from(by),
            reply,
        })
        .await?
    }

    /// Queued and running tasks per queue.
    pub async fn queue_stats(&self) -> Result<Vec<QueueStats>, EngineError> {
        self.ask(|reply| Input::QueueStats { reply }).await
    }

    /// Latest progress report of each task of a run that has one: `(task, fraction, message)`.
    pub async fn progress(
        &self,
        run_id: &str,
    ) -> Result<Vec<(String, Option<f64>, String)>, EngineError> {
        self.ask(|reply| Input::Progress {
            run_id: run_id.to_owned(),
            reply,
        })
        .await
    }

    /// Lets go of a finished run about to be deleted (retention), so nothing is written
    /// for it again; false when the run is still active and must be kept.
    pub async fn forget(&self, run_id: &str) -> Result<bool, EngineError> {
        self.ask(|reply| Input::Forget {
            run_id: run_id.to_owned(),
            reply,
        })
        .await
    }
}

/// Recovers active runs from the store, then starts the core loop, the writer and the
/// results reader. They stop when `shutdown` turns true.
pub async fn start(
    store: Arc<dyn Store>,
    queue: Arc<RedisQueue>,
    bus: Bus,
    config: EngineConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<(EngineHandle, tokio::task::JoinHandle<()>), EngineError> {
    let (tx, rx) = mpsc::channel(1024);
    let (flush_tx, flush_rx) = mpsc::channel(64);
    let (enqueued_tx, enqueued_rx) = mpsc::unbounded_channel();
    let health = WriterHealth::default();
    let generation = crate::store::Generation::default();
    let writer = tokio::spawn(writer::run(
        Arc::clone(&store),
        Arc::clone(&queue),
        bus,
        flush_rx,
        enqueued_tx,
        health.clone(),
        generation.clone(),
    ));
    let mut core = core::Core::new(
        Arc::clone(&store),
        config.clone(),
        flush_tx,
        enqueued_rx,
        tx.downgrade(),
    );
    let in_flight = core.recover().await?;
    // Attempts the store says are queued or running but Redis does not hold were never
    // pushed (a crash between commit and push) or were lost with Redis: queue them again.
    let present = redis_watch::attempts_in_redis(&queue)
        .await
        .map_err(|source| EngineError::QueueStartup {
            what: "reading the queues",
            source,
        })?;
    core.reconcile(in_flight, &present).await;
    if let Ok(names) = queue.queues().await {
        core.seed_queues(names);
    }
    let reader = queue
        .results_reader(&config.consumer)
        .await
        .map_err(|source| EngineError::QueueStartup {
            what: "reading the results stream",
            source,
        })?;
    tokio::spawn(reader::run(
        reader,
        config.read_batch,
        tx.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(redis_watch::run(
        Arc::clone(&queue),
        config.lease_timeout,
        tx.clone(),
        shutdown.clone(),
    ));
    let core_task = tokio::spawn(async move {
        core.run(rx, shutdown).await;
        drop(core); // closes the flush channel, so the writer drains and stops
        let _ = writer.await;
    });
    Ok((
        EngineHandle {
            tx,
            writer: health,
            generation,
        },
        core_task,
    ))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
