//! What a trace is made of, copied out of one committed write batch: the few fields
//! spans need, owned, so the batch itself is never held or shared with the exporter.

use crate::queue::Outgoing;
use crate::store::{RunRow, WriteBatch};
use std::collections::HashMap;

/// Handler, agent and queue of one task: attributes of its spans.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TaskMeta {
    pub task: String,
    pub handler: String,
    pub agent: Option<String>,
    pub queue: String,
}

/// One thing that happened, as stored.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Fact {
    /// A run was created, or tasks were added to it (spawned by a handler).
    Tasks { run: String, tasks: Vec<TaskMeta> },
    /// A task changed state; `attempt` is its current attempt.
    Task {
        run: String,
        task: String,
        state: String,
        attempt: u32,
        worker: Option<String>,
        at_ms: i64,
        /// The queue its message went to, when this event dispatched it.
        queue: Option<String>,
        /// `(kind, message)` of the failure that ended the attempt.
        error: Option<(String, String)>,
        /// When the attempt started, from the task's stored row: a worker may send its
        /// result without a `started` message first, and then no `running` event exists.
        started_ms: Option<i64>,
    },
    /// A run ended.
    RunEnded {
        run: String,
        name: String,
        state: String,
        created_ms: i64,
        finished_ms: i64,
        error: Option<String>,
    },
}

fn is_terminal_run(state: &str) -> bool {
    matches!(state, "succeeded" | "failed" | "cancelled")
}

fn task_meta(spec: &crate::dag::TaskSpec, run_queue: &str) -> TaskMeta {
    TaskMeta {
        task: spec.id.clone(),
        handler: spec.handler.clone(),
        agent: spec.agent.clone(),
        queue: spec.queue.clone().unwrap_or_else(|| run_queue.to_owned()),
    }
}

/// The facts of one committed batch, in the order they happened.
pub(crate) fn extract(batch: &WriteBatch, outgoing: &Outgoing) -> Vec<Fact> {
    let mut out = Vec::new();
    let mut run_queues: HashMap<&str, &str> = HashMap::new();
    for new in &batch.new_runs {
        run_queues.insert(&new.run.id, &new.run.queue);
        out.push(Fact::Tasks {
            run: new.run.id.clone(),
            tasks: new
                .tasks()
                .map(|(spec, _)| task_meta(spec, &new.run.queue))
                .collect(),
        });
    }
    for (spec, row) in &batch.new_tasks {
        let queue = run_queues
            .get(row.run_id.as_str())
            .copied()
            .or_else(|| {
                batch
                    .runs
                    .iter()
                    .find(|r| r.id == row.run_id)
                    .map(|r| r.queue.as_str())
            })
            .unwrap_or("default");
        out.push(Fact::Tasks {
            run: row.run_id.clone(),
            tasks: vec![task_meta(spec, queue)],
        });
    }
    // Where each dispatched attempt went, to name the queue on its `queued` event (also
    // for runs recovered after a restart, whose specs this process never saw). Messages
    // name tasks by index; the task rows of the same batch give their ids.
    let mut ids: HashMap<(&str, u32), &str> = HashMap::new();
    let rows = batch
        .tasks
        .iter()
        .chain(batch.new_runs.iter().flat_map(|n| n.tasks.iter()))
        .chain(batch.new_tasks.iter().map(|(_, r)| r));
    let mut latest: HashMap<(&str, &str), &crate::store::TaskRow> = HashMap::new();
    for r in rows {
        ids.insert((r.run_id.as_str(), r.idx), r.task_id.as_str());
        latest.insert((r.run_id.as_str(), r.task_id.as_str()), r);
    }
    let mut sent: HashMap<(&str, &str, u32), &str> = HashMap::new();
    for t in &outgoing.tasks {
        if let Some(task) = ids.get(&(&*t.attempt.run, t.attempt.task)) {
            sent.insert((&*t.attempt.run, task, t.attempt.attempt), t.queue.as_str());
        }
    }
    let row_of = |id: &str| -> Option<&RunRow> {
        batch
            .runs
            .iter()
            .find(|r| r.id == id)
            .or_else(|| batch.new_runs.iter().map(|n| &n.run).find(|r| r.id == id))
    };
    for e in &batch.events {
        match (e.kind.as_str(), e.state.as_deref(), e.task_id.as_ref()) {
            ("task", Some(state), Some(task)) => {
                let queue = (state == "queued")
                    .then(|| {
                        sent.get(&(e.run_id.as_str(), task.as_str(), e.attempt))
                            .map(|q| (*q).to_owned())
                    })
                    .flatten();
                let error = e.data.as_ref().and_then(|d| {
                    let kind = d.get("kind")?.as_str()?.to_owned();
                    let message = d
                        .get("message")
                        .and_then(|m| m.as_str())
                        .unwrap_or_default()
                        .to_owned();
                    Some((kind, message))
                });
                // The row is the task's latest image: it speaks for this event only if
                // it is of the same attempt.
                let row = latest
                    .get(&(e.run_id.as_str(), task.as_str()))
                    .filter(|r| r.attempt == e.attempt);
                out.push(Fact::Task {
                    run: e.run_id.clone(),
                    task: task.clone(),
                    state: state.to_owned(),
                    attempt: e.attempt,
                    started_ms: row.and_then(|r| r.started_at_ms),
                    worker: e
                        .worker_id
                        .clone()
                        .or_else(|| row.and_then(|r| r.worker_id.clone())),
                    at_ms: e.at_ms,
                    queue,
                    error,
                });
            }
            ("run", Some(state), _) if is_terminal_run(state) => {
                let row = row_of(&e.run_id);
                out.push(Fact::RunEnded {
                    run: e.run_id.clone(),
                    name: row.map(|r| r.name.clone()).unwrap_or_default(),
                    state: state.to_owned(),
                    created_ms: row.map_or(e.at_ms, |r| r.created_at_ms),
                    finished_ms: e.at_ms,
                    error: row.and_then(|r| r.error.clone()),
                });
            }
            _ => {}
        }
    }
    out
}
