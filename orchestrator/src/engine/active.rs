//! A run the engine holds in memory, and its row images for the store.

use crate::dag::{validate, Limits, RunOptions, RunSpec};
use crate::queue::QueueEntry;
use crate::state_machine::{RunMachine, RunState, TaskRuntime, TaskState};
use crate::store::{RunRow, Store, StoreError, TaskRow};
use std::collections::HashMap;
use std::sync::Arc;

/// A run in memory: its machine plus what the machine does not track.
pub(crate) struct ActiveRun {
    pub id: Arc<str>,
    pub machine: RunMachine,
    pub created_at_ms: i64,
    /// The API token that submitted it.
    pub created_by: Option<Arc<str>>,
    /// Latest progress report per task; live only, never stored.
    pub progress: HashMap<u32, (Option<f64>, String)>,
    /// When the run last became terminal (engine clock, ms), to evict it later.
    pub finished_at: Option<i64>,
    /// Where each task's current attempt waits in Redis. Lets a cancel delete entries
    /// no worker has read yet.
    pub entries: HashMap<u32, Pushed>,
    /// Last sign of life (start, progress, log) of running attempts of tasks that set
    /// `idle_timeout_s`.
    pub activity: HashMap<u32, Activity>,
    /// Encoded size of succeeded tasks' outputs, measured once when a dependent is
    /// dispatched (a task message carries every upstream output).
    pub output_sizes: HashMap<u32, usize>,
    /// Log stored per task's current attempt, against the per-attempt caps.
    pub logs: super::log_cap::LogTally,
}

/// The queue entry an attempt of a task was pushed as.
#[derive(Debug, Clone)]
pub(crate) struct Pushed {
    pub attempt: u32,
    pub entry: QueueEntry,
}

/// When a running attempt last showed a sign of life.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Activity {
    pub attempt: u32,
    pub last_ms: i64,
}

impl ActiveRun {
    /// The run's row as it stands.
    pub fn row(&self) -> RunRow {
        let m = &self.machine;
        let dag = m.dag();
        RunRow {
            id: self.id.to_string(),
            name: dag.name.clone(),
            queue: dag.queue.clone(),
            state: m.state(),
            task_count: dag.len() as u32,
            counts: m.counts(),
            error: self.error(),
            created_at_ms: self.created_at_ms,
            finished_at_ms: m.finished_at_ms(),
            last_seq: m.seq(),
            options: Arc::clone(&dag.options),
            usage: m.usage(),
            created_by: self.created_by.as_deref().map(str::to_owned),
        }
    }

    /// Why a failed run failed, in a line.
    fn error(&self) -> Option<String> {
        if self.machine.state() != RunState::Failed {
            return None;
        }
        if let Some(why) = self.machine.exhausted() {
            return Some(why.to_owned());
        }
        let dag = self.machine.dag();
        let failed: Vec<&str> = self
            .machine
            .tasks()
            .iter()
            .enumerate()
            .filter(|(_, t)| t.state == TaskState::Failed)
            .map(|(i, _)| dag.task(i as u32).id.as_str())
            .collect();
        let shown = failed
            .iter()
            .take(5)
            .copied()
            .collect::<Vec<_>>()
            .join(", ");
        let more = if failed.len() > 5 {
            format!(" and {} more", failed.len() - 5)
        } else {
            String::new()
        };
        Some(format!("{} task(s) failed: {shown}{more}", failed.len()))
    }

    /// Task `i`'s row as it stands.
    pub fn task_row(&self, i: u32) -> TaskRow {
        let t = self.machine.task(i);
        TaskRow {
            run_id: self.id.to_string(),
            task_id: self.machine.dag().task(i).id.clone(),
            idx: i,
            state: t.state,
            attempt: t.attempt,
            failures: t.failures,
            lost: t.lost,
            output: t.output.clone(),
            error: t.error.as_deref().cloned(),
            worker_id: t.worker_id.as_deref().map(str::to_owned),
            queued_at_ms: t.queued_at_ms,
            started_at_ms: t.started_at_ms,
            finished_at_ms: t.finished_at_ms,
            usage: t.usage,
            charges: t.charges.clone(),
            // Every write of the row carries the sequence as it stands, and the run's
            // row (with `last_seq`) is written in the same commit (`flush.rs`).
            rev: self.machine.seq(),
        }
    }
}

/// Rebuilds a stored run in memory (a finished one counts as finished at `now_ms`).
/// `None` when there is no such run.
pub(super) async fn load(
    store: &dyn Store,
    id: &str,
    now_ms: i64,
) -> Result<Option<ActiveRun>, StoreError> {
    let Some(run) = store.get_run(id).await? else {
        return Ok(None);
    };
    let stored = store.get_tasks(id).await?;
    let spec = RunSpec::from_parts(
        run.name.clone(),
        run.queue.clone(),
        stored.iter().map(|t| t.spec.clone()).collect(),
        RunOptions::clone(&run.options),
    );
    // A stored run was valid when submitted; limits may have been lowered since, and
    // must not strand it.
    let unlimited = Limits {
        max_tasks: usize::MAX,
        max_dependencies: usize::MAX,
        max_input_bytes: usize::MAX,
        max_json_depth: usize::MAX,
        ..Limits::default()
    };
    let mut dag = validate(spec, &unlimited)
        .map_err(|e| StoreError::Corrupt(format!("stored run {id} is not a valid DAG: {e}")))?;
    dag.options = Arc::clone(&run.options);
    let rows = stored
        .into_iter()
        .map(|t| {
            let r = t.row;
            let mut rt = TaskRuntime::new();
            rt.state = r.state;
            rt.attempt = r.attempt;
            rt.failures = r.failures;
            rt.lost = r.lost;
            rt.output = r.output;
            rt.error = r.error.map(Box::new);
            rt.worker_id = r.worker_id.map(Arc::from);
            rt.queued_at_ms = r.queued_at_ms;
            rt.started_at_ms = r.started_at_ms;
            rt.finished_at_ms = r.finished_at_ms;
            rt.usage = r.usage;
            rt.charges = r.charges;
            rt
        })
        .collect();
    let machine = RunMachine::restore(
        Arc::new(dag),
        rows,
        run.state,
        run.last_seq,
        run.finished_at_ms,
    );
    Ok(Some(ActiveRun {
        id: Arc::from(run.id.as_str()),
        machine,
        created_at_ms: run.created_at_ms,
        created_by: run.created_by.as_deref().map(Arc::from),
        progress: HashMap::new(),
        finished_at: run.state.is_terminal().then_some(now_ms),
        entries: HashMap::new(),
        output_sizes: HashMap::new(),
        logs: Default::default(),
        activity: HashMap::new(),
    }))
}
