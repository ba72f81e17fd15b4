//! Planner statistics for the tables the engine writes, when nothing else keeps them.
//!
//! The writer's statements are prepared once per connection, and after five runs
//! Postgres keeps a generic plan for each. Made while `runs` and `tasks` were empty
//! and never analyzed, that plan finds the rows to update by a hash join over a
//! sequential scan of the whole table, and keeps doing so until an ANALYZE of the
//! table invalidates it. Autovacuum analyzes within a minute of the first rows; with
//! autovacuum off (as on the CI Postgres here) every commit read every row ever
//! written, and a server slowed down with every run it had finished (benches/NOTES.md,
//! "Finished runs pile up"). So the store analyzes those tables itself once it has
//! written [`FIRST`] rows, then each time the rows it wrote double: a handful of
//! ANALYZEs in a process's life, each bounded by Postgres' sample, none of them
//! blocking a write (ANALYZE takes no lock that inserts or updates wait for).

use sqlx::PgPool;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Rows written before the first ANALYZE: enough for the new plans to see a table
/// where an index beats a scan, few enough that the scans cost nothing meanwhile.
pub(super) const FIRST: u64 = 1_000;

/// The tables the engine's commits update by key.
const STATEMENT: &str = "analyze runs, tasks, task_events";

/// Counts the rows this store wrote and says when the tables are due an ANALYZE.
#[derive(Debug)]
pub(super) struct Analyzer {
    written: AtomicU64,
    next: AtomicU64,
    busy: AtomicBool,
}

impl Default for Analyzer {
    fn default() -> Self {
        Self {
            written: AtomicU64::new(0),
            next: AtomicU64::new(FIRST),
            busy: AtomicBool::new(false),
        }
    }
}

impl Analyzer {
    /// Counts `rows` written; true when an ANALYZE is due and none is under way, in
    /// which case the caller runs one and then calls [`Analyzer::done`].
    pub(super) fn note(&self, rows: u64) -> bool {
        let total = self.written.fetch_add(rows, Ordering::Relaxed) + rows;
        if total < self.next.load(Ordering::Relaxed) || self.busy.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.next.store(total.saturating_mul(2), Ordering::Relaxed);
        true
    }

    /// Marks the ANALYZE [`Analyzer::note`] asked for as finished.
    pub(super) fn done(&self) {
        self.busy.store(false, Ordering::Release);
    }
}

/// Runs the ANALYZE in the background on the read pool: the commit that made it due
/// does not wait for it. A failure is logged and retried at the next threshold.
pub(super) fn spawn(pool: PgPool, analyzer: Arc<Analyzer>) {
    tokio::spawn(async move {
        if let Err(e) = sqlx::query(STATEMENT).execute(&pool).await {
            tracing::warn!(error = %e, "analyze of the engine's tables failed");
        }
        analyzer.done();
    });
}

/// The rows a batch writes, as the ANALYZE threshold counts them.
pub(super) fn rows(batch: &crate::store::WriteBatch) -> u64 {
    (batch.new_runs.len()
        + batch.new_runs.iter().map(|n| n.tasks.len()).sum::<usize>()
        + batch.tasks.len()
        + batch.events.len()
        + batch.runs.len()
        + batch.new_tasks.len()) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first ANALYZE comes at FIRST rows, the next ones each time the count
    /// doubles, never two at once, and a threshold passed during one is taken at the
    /// next write.
    #[test]
    fn analyze_is_due_at_the_first_threshold_then_at_each_doubling() {
        let a = Analyzer::default();
        assert!(!a.note(FIRST - 1));
        assert!(a.note(1));
        a.done();
        assert!(!a.note(FIRST - 1));
        assert!(a.note(1), "2,000 rows");
        assert!(!a.note(10 * FIRST), "one is under way");
        a.done();
        assert!(a.note(0), "12,000 rows, past 4,000");
        a.done();
        assert!(!a.note(12 * FIRST - 1), "next at 24,000");
        assert!(a.note(1));
    }
}
