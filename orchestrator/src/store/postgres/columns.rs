//! The column arrays a batch of rows becomes: one array per column, expanded by
//! `unnest` in a single statement, split before a statement grows too big.

use super::super::text::{json_text, without_nul as pg_text};
use super::super::*;

/// Column arrays for task rows, shared by the insert of new runs and the update.
#[derive(Default)]
pub(super) struct TaskColumns {
    pub(super) run_id: Vec<String>,
    pub(super) task_id: Vec<String>,
    pub(super) state: Vec<&'static str>,
    pub(super) attempt: Vec<i32>,
    pub(super) failures: Vec<i32>,
    pub(super) lost: Vec<i32>,
    pub(super) output: Vec<Option<String>>,
    pub(super) error: Vec<Option<String>>,
    pub(super) worker_id: Vec<Option<String>>,
    pub(super) queued_at: Vec<Option<i64>>,
    pub(super) started_at: Vec<Option<i64>>,
    pub(super) finished_at: Vec<Option<i64>>,
    pub(super) usage: Vec<Option<String>>,
    pub(super) rev: Vec<i64>,
    /// Bytes of JSON text pushed so far, to keep one statement's arrays far from
    /// Postgres's 1 GB limit on a value.
    pub(super) bytes: usize,
}

/// JSON text per statement before a batch of task rows is split: a burst of large
/// outputs becomes several statements (in the same transaction), never one over 1 GB.
const STATEMENT_BYTES: usize = 16 << 20;

/// Rows per statement before a batch is split. The encoded arrays of one statement
/// are held at once (by us and by the connection's write buffer, which keeps its
/// size): a run of 100,000 tasks inserted in one statement held ~50 MB at the
/// server's memory peak; 8,192 rows hold ~4 MB and still take one round trip each.
pub(super) const STATEMENT_ROWS: usize = 8192;

impl TaskColumns {
    pub(super) fn is_full(&self) -> bool {
        self.bytes >= STATEMENT_BYTES || self.len() >= STATEMENT_ROWS
    }

    pub(super) fn len(&self) -> usize {
        self.run_id.len()
    }

    pub(super) fn push(&mut self, t: &TaskRow) {
        self.run_id.push(t.run_id.clone());
        self.task_id.push(t.task_id.clone());
        self.state.push(t.state.as_str());
        self.attempt.push(t.attempt as i32);
        self.failures.push(t.failures as i32);
        self.lost.push(t.lost as i32);
        self.output.push(t.output.as_ref().map(json_text));
        self.error.push(t.error.as_ref().map(json_text));
        self.worker_id.push(t.worker_id.as_deref().map(pg_text));
        self.queued_at.push(t.queued_at_ms);
        self.started_at.push(t.started_at_ms);
        self.finished_at.push(t.finished_at_ms);
        self.rev.push(t.rev as i64);
        self.usage.push(
            task_usage_json(&t.usage, &t.charges)
                .as_ref()
                .map(json_text),
        );
        self.bytes += [&self.output, &self.error, &self.usage]
            .iter()
            .filter_map(|c| c.last().and_then(|v| v.as_ref()).map(String::len))
            .sum::<usize>()
            + t.task_id.len()
            + t.run_id.len();
    }
}

pub(super) fn run_columns(runs: &[&RunRow]) -> RunColumns {
    let mut c = RunColumns::default();
    for r in runs {
        c.id.push(r.id.clone());
        c.name.push(r.name.clone());
        c.queue.push(r.queue.clone());
        c.state.push(r.state.as_str());
        c.task_count.push(r.task_count as i32);
        c.counts.push(json_text(&counts_map(&r.counts)));
        c.error.push(r.error.clone());
        c.created_at.push(r.created_at_ms);
        c.finished_at.push(r.finished_at_ms);
        c.last_seq.push(r.last_seq as i64);
        c.usage.push(usage_json(&r.usage).as_ref().map(json_text));
        c.created_by.push(r.created_by.as_deref().map(pg_text));
    }
    c
}

#[derive(Default)]
pub(super) struct RunColumns {
    pub(super) id: Vec<String>,
    pub(super) name: Vec<String>,
    pub(super) queue: Vec<String>,
    pub(super) state: Vec<&'static str>,
    pub(super) task_count: Vec<i32>,
    pub(super) counts: Vec<String>,
    pub(super) error: Vec<Option<String>>,
    pub(super) created_at: Vec<i64>,
    pub(super) finished_at: Vec<Option<i64>>,
    pub(super) last_seq: Vec<i64>,
    pub(super) usage: Vec<Option<String>>,
    pub(super) created_by: Vec<Option<String>>,
}
