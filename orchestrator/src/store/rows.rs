//! Rows as the store reads and writes them.

use crate::access::Scope;
use crate::dag::{AgentSpec, Dag, RunOptions, TaskSpec};
use crate::state_machine::budget::Charges;
use crate::state_machine::{RunState, TaskFailure, TaskState, Usage, ALL_TASK_STATES};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A run's own row.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    pub id: String,
    pub name: String,
    pub queue: String,
    pub state: RunState,
    pub task_count: u32,
    /// Tasks per state, indexed by `TaskState as usize`.
    pub counts: [u32; crate::state_machine::TASK_STATE_COUNT],
    pub error: Option<String>,
    pub created_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub last_seq: u64,
    /// Agents, budget and limits the run was submitted with; written once, shared with
    /// the run's graph rather than copied into every row image.
    pub options: Arc<RunOptions>,
    /// Tokens and money its tasks used so far.
    pub usage: Usage,
    /// The token that submitted it (`None` for runs stored before tokens had names).
    pub created_by: Option<String>,
}

/// A registered agent.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRow {
    pub name: String,
    pub spec: AgentSpec,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// An API token as stored: its secret only as a hash.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRow {
    pub name: String,
    pub scope: Scope,
    /// SHA-256 of the secret, lowercase hex.
    pub secret_sha256: String,
    pub created_at_ms: i64,
    /// The token that created this one.
    pub created_by: String,
    /// About when it was last presented (kept to within a minute or so).
    pub last_used_at_ms: Option<i64>,
}

/// A change recorded in the audit log: those with no run whose events could hold them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    AgentPut,
    AgentDelete,
    TokenCreate,
    TokenRevoke,
}

impl AuditAction {
    /// The action's name, as stored and shown: `agent.put`, `token.revoke`, ….
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::AgentPut => "agent.put",
            AuditAction::AgentDelete => "agent.delete",
            AuditAction::TokenCreate => "token.create",
            AuditAction::TokenRevoke => "token.revoke",
        }
    }

    /// The action a stored name stands for.
    pub fn parse(s: &str) -> Option<Self> {
        [
            AuditAction::AgentPut,
            AuditAction::AgentDelete,
            AuditAction::TokenCreate,
            AuditAction::TokenRevoke,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }
}

/// One record of the append-only audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    /// Increasing with each record; `0` on a record not yet stored.
    pub id: i64,
    pub at_ms: i64,
    /// The token that made the change.
    pub by: String,
    pub action: AuditAction,
    /// The agent's or token's name.
    pub target: String,
    /// What else is worth knowing (a new token's scope; whether a put created the agent).
    pub detail: Option<Value>,
}

impl AuditRow {
    /// A record, to be stored, of `action` done to `target` by token `by`.
    pub fn new(action: AuditAction, by: &str, target: &str, at_ms: i64) -> Self {
        Self {
            id: 0,
            at_ms,
            by: by.to_owned(),
            action,
            target: target.to_owned(),
            detail: None,
        }
    }

    /// The record with `detail` attached.
    pub fn with_detail(self, detail: Value) -> Self {
        Self {
            detail: Some(detail),
            ..self
        }
    }
}

/// Usage as stored: nothing for none, so the many tasks that call no model cost no bytes.
pub fn usage_json(u: &Usage) -> Option<Value> {
    (*u != Usage::default()).then(|| serde_json::to_value(u).unwrap_or(Value::Null))
}

/// Reads a stored usage column; a missing or unreadable one is no usage.
pub fn usage_from_json(v: Option<Value>) -> Usage {
    v.and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default()
}

/// A task's usage as stored: its total, and under `attempts` what each attempt was
/// charged, so a report seen again after a restart still counts once.
pub fn task_usage_json(u: &Usage, charges: &Charges) -> Option<Value> {
    let mut v = usage_json(u);
    if let (Some(Value::Object(m)), false) = (&mut v, charges.is_empty()) {
        let attempts = serde_json::to_value(charges).unwrap_or(Value::Null);
        m.insert("attempts".into(), attempts);
    }
    v
}

/// Reads a column written by [`task_usage_json`]; rows stored before attempts were
/// recorded read as no charges.
pub fn task_usage_from_json(v: Option<Value>) -> (Usage, Charges) {
    let charges = v
        .as_ref()
        .and_then(|v| v.get("attempts"))
        .and_then(|a| serde_json::from_value(a.clone()).ok())
        .unwrap_or_default();
    (usage_from_json(v), charges)
}

/// Tasks per state by name, as in the API.
pub fn counts_map(
    counts: &[u32; crate::state_machine::TASK_STATE_COUNT],
) -> BTreeMap<&'static str, u32> {
    ALL_TASK_STATES
        .iter()
        .map(|s| (s.as_str(), counts[*s as usize]))
        .collect()
}

/// Parses a counts object written by [`counts_map`].
pub fn counts_from_json(v: &Value) -> [u32; crate::state_machine::TASK_STATE_COUNT] {
    let mut out = [0u32; crate::state_machine::TASK_STATE_COUNT];
    for s in ALL_TASK_STATES {
        out[s as usize] = v.get(s.as_str()).and_then(Value::as_u64).unwrap_or(0) as u32;
    }
    out
}

/// A task's current state: everything that changes as it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRow {
    pub run_id: String,
    pub task_id: String,
    pub idx: u32,
    pub state: TaskState,
    pub attempt: u32,
    pub failures: u32,
    pub lost: u32,
    pub output: Option<Value>,
    pub error: Option<TaskFailure>,
    pub worker_id: Option<String>,
    pub queued_at_ms: Option<i64>,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    pub usage: Usage,
    /// What each attempt was charged; `usage` adds them up.
    pub charges: Charges,
    /// The run's event sequence when this row was last written (`last_seq` of the run
    /// row written in the same commit): what `GET /runs/{id}/tasks?since=` filters on.
    pub rev: u64,
}

/// A task as stored: its spec and its current row.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTask {
    pub spec: TaskSpec,
    pub row: TaskRow,
}

/// A run to insert with all its tasks.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub run: RunRow,
    /// The run's graph, shared with the engine rather than copied: a new run's specs
    /// are the biggest part of its first write (hundreds of bytes per task).
    pub dag: Arc<Dag>,
    /// Task `i`'s row, for every task of `dag` in order.
    pub tasks: Vec<TaskRow>,
}

impl NewRun {
    /// Every task's spec with its row.
    pub fn tasks(&self) -> impl Iterator<Item = (&TaskSpec, &TaskRow)> {
        self.dag.tasks().iter().zip(&self.tasks)
    }
}

/// One entry of a run's append-only event log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventRow {
    pub run_id: String,
    pub seq: u64,
    pub task_id: Option<String>,
    /// `task`, `run` or `log`.
    pub kind: String,
    pub state: Option<String>,
    pub attempt: u32,
    pub worker_id: Option<String>,
    pub at_ms: i64,
    /// The error of a failed attempt, or `{level, message}` of a log line.
    pub data: Option<Value>,
    /// The token whose API request caused the event (submit, cancel, retry); `None` for
    /// what workers and the scheduler did.
    pub by: Option<String>,
}

/// A worker as last heard from.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerRow {
    pub id: String,
    /// The worker's own description (`WorkerInfo` of the protocol).
    pub info: Value,
    /// `running`, `draining`, `stopped` or `lost`.
    pub state: String,
    pub last_heartbeat_ms: i64,
}

/// Everything one group commit writes.
#[derive(Debug, Clone, Default)]
pub struct WriteBatch {
    pub new_runs: Vec<NewRun>,
    /// Latest row image of tasks of existing runs; one per task.
    pub tasks: Vec<TaskRow>,
    pub events: Vec<EventRow>,
    /// Latest row of runs that changed; one per run.
    pub runs: Vec<RunRow>,
    pub workers: Vec<WorkerRow>,
    /// Tasks added to existing runs (spawned by a handler), with their specs.
    pub new_tasks: Vec<(TaskSpec, TaskRow)>,
    /// Specs of existing tasks that changed (a spawn adds dependencies to the parent's
    /// dependents): (run id, spec).
    pub specs: Vec<(String, TaskSpec)>,
    /// Options of existing runs that changed (a person raised the run's budget), in
    /// order: (run id, options).
    pub options: Vec<(String, Arc<RunOptions>)>,
}

impl WriteBatch {
    pub fn is_empty(&self) -> bool {
        self.new_runs.is_empty()
            && self.tasks.is_empty()
            && self.events.is_empty()
            && self.runs.is_empty()
            && self.workers.is_empty()
            && self.new_tasks.is_empty()
            && self.specs.is_empty()
            && self.options.is_empty()
    }

    /// Folds later batches into this one, in order, keeping only the latest image of each
    /// row (a task's at the place of its first image).
    ///
    /// All at once rather than one batch at a time: the writer folds up to 32 flushes of
    /// hundreds of task rows each, and indexing the rows afresh for every fold (cloning
    /// two strings per row to key it) made folding quadratic, ~10 % of the server's CPU
    /// in W1.
    pub fn merge_all(&mut self, later: Vec<WriteBatch>) {
        use std::collections::hash_map::{Entry, HashMap};
        if later.is_empty() {
            return;
        }
        let mut tasks = std::mem::take(&mut self.tasks);
        let mut runs = Vec::new();
        let mut workers = Vec::new();
        for b in later {
            self.new_runs.extend(b.new_runs);
            self.events.extend(b.events);
            self.new_tasks.extend(b.new_tasks);
            self.options.extend(b.options);
            for (run, spec) in b.specs {
                match self
                    .specs
                    .iter_mut()
                    .find(|(r, s)| *r == run && s.id == spec.id)
                {
                    Some(x) => x.1 = spec,
                    None => self.specs.push((run, spec)),
                }
            }
            tasks.extend(b.tasks);
            runs.extend(b.runs);
            workers.extend(b.workers);
        }
        // Which image each output row takes: the last of its task, at its first place.
        let mut take: Vec<usize> = Vec::with_capacity(tasks.len());
        let mut place: HashMap<(&str, &str), usize> = HashMap::with_capacity(tasks.len());
        for (i, t) in tasks.iter().enumerate() {
            match place.entry((t.run_id.as_str(), t.task_id.as_str())) {
                Entry::Occupied(e) => take[*e.get()] = i,
                Entry::Vacant(e) => {
                    e.insert(take.len());
                    take.push(i);
                }
            }
        }
        drop(place);
        if take.len() == tasks.len() {
            self.tasks = tasks;
        } else {
            let mut images: Vec<Option<TaskRow>> = tasks.into_iter().map(Some).collect();
            self.tasks = take.into_iter().filter_map(|i| images[i].take()).collect();
        }
        for r in runs {
            match self.runs.iter_mut().find(|x| x.id == r.id) {
                Some(x) => *x = r,
                None => self.runs.push(r),
            }
        }
        for w in workers {
            match self.workers.iter_mut().find(|x| x.id == w.id) {
                Some(x) => *x = w,
                None => self.workers.push(w),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(run: &str, id: &str, state: TaskState, rev: u64) -> TaskRow {
        TaskRow {
            run_id: run.into(),
            task_id: id.into(),
            idx: 0,
            state,
            attempt: 1,
            failures: 0,
            lost: 0,
            output: None,
            error: None,
            worker_id: None,
            queued_at_ms: None,
            started_at_ms: None,
            finished_at_ms: None,
            usage: Usage::default(),
            charges: Charges::default(),
            rev,
        }
    }

    fn worker(id: &str, beat: i64) -> WorkerRow {
        WorkerRow {
            id: id.into(),
            info: Value::Null,
            state: "running".into(),
            last_heartbeat_ms: beat,
        }
    }

    fn batch(tasks: Vec<TaskRow>, workers: Vec<WorkerRow>) -> WriteBatch {
        WriteBatch {
            tasks,
            workers,
            ..WriteBatch::default()
        }
    }

    #[test]
    fn folding_keeps_each_rows_latest_image_at_its_first_place() {
        use TaskState::{Queued, Running, Succeeded};
        let mut first = batch(
            vec![task("r", "a", Queued, 1), task("r", "b", Queued, 2)],
            vec![worker("w1", 1)],
        );
        first.merge_all(vec![
            batch(
                vec![task("r", "b", Running, 3), task("s", "a", Queued, 4)],
                vec![worker("w2", 2), worker("w1", 3)],
            ),
            batch(vec![], vec![]),
            batch(
                vec![task("r", "a", Succeeded, 5), task("r", "b", Succeeded, 6)],
                vec![],
            ),
        ]);
        let got: Vec<_> = first
            .tasks
            .iter()
            .map(|t| (t.run_id.as_str(), t.task_id.as_str(), t.state, t.rev))
            .collect();
        assert_eq!(
            got,
            [
                ("r", "a", Succeeded, 5),
                ("r", "b", Succeeded, 6),
                // Same task id, another run: another row.
                ("s", "a", Queued, 4),
            ]
        );
        let beats: Vec<_> = first
            .workers
            .iter()
            .map(|w| (w.id.as_str(), w.last_heartbeat_ms))
            .collect();
        assert_eq!(beats, [("w1", 3), ("w2", 2)]);
    }

    #[test]
    fn folding_nothing_or_distinct_rows_changes_nothing_else() {
        use TaskState::Queued;
        let mut b = batch(vec![task("r", "a", Queued, 1)], vec![]);
        b.merge_all(Vec::new());
        assert_eq!(b.tasks.len(), 1);
        b.merge_all(vec![batch(vec![task("r", "b", Queued, 2)], vec![])]);
        let ids: Vec<_> = b.tasks.iter().map(|t| t.task_id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
    }
}
