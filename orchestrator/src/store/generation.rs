//! A count of the writes to runs this process has committed: the version of every
//! answer the API derives from stored runs.
//!
//! Only the leader serves the API and only its writer (and run deletion) changes runs,
//! so an answer read after taking the count is at least as new as every write the count
//! covers, and stays current for as long as the count has not moved.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Shared between the writer, run deletion and the API's cached reads.
#[derive(Debug, Clone, Default)]
pub struct Generation(Arc<AtomicU64>);

impl Generation {
    /// The count now; take it before reading the store.
    pub fn current(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// Records a committed write to runs, tasks or events; call after the commit.
    pub fn advance(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_clone_sees_an_advance() {
        let g = Generation::default();
        let seen_by_api = g.clone();
        let before = seen_by_api.current();
        g.advance();
        assert_ne!(seen_by_api.current(), before);
    }
}
