//! Admission at the end of a batch: waiting tasks the shared limits now allow, and
//! tasks deferred because a flush had no room left for them (a run of 100,000 ready
//! tasks is dispatched in slices, see [`DISPATCH_SLICE`]).

use super::core::Core;
#[cfg(doc)]
use super::core::DISPATCH_SLICE;
use super::limiter::Limiter;
use crate::dag::KeyLimit;
use crate::state_machine::Gate;
use std::sync::Arc;

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

impl Core {
    /// Dispatches what waiting tasks their runs' limits, budgets and the shared limits
    /// now allow.
    pub(super) fn admit_waiting(&mut self) {
        let carry_on = self.admit_backlog && self.writer_caught_up();
        if !std::mem::take(&mut self.admit_due) && !carry_on {
            return;
        }
        self.admit_backlog = false;
        let runs: Vec<Arc<str>> = self.waiting_runs.iter().cloned().collect();
        for id in runs {
            let now = self.config.clock.now_ms();
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
        // Out of room: some run may have more it could admit now (at worst, one spare
        // pass finds it has not).
        self.admit_backlog = self.room == 0 && !self.waiting_runs.is_empty();
    }

    /// Resolves tasks deferred for lack of room, as far as this batch's room allows,
    /// but only once the writer has taken every earlier flush: slices go no faster
    /// than they are written, so at most about two are held at once.
    pub(super) fn release_deferred(&mut self) {
        if self.deferred_runs.is_empty() || self.room == 0 || !self.writer_caught_up() {
            return;
        }
        let runs: Vec<Arc<str>> = self.deferred_runs.iter().cloned().collect();
        for id in runs {
            if self.room == 0 {
                break;
            }
            let now = self.config.clock.now_ms();
            let _ = self.apply(&id, |m, o| {
                m.release_deferred(now, o);
                Ok(())
            });
            if !self.runs.get(&id).is_some_and(|r| r.machine.has_deferred()) {
                self.deferred_runs.remove(&id);
            }
        }
    }

    /// True when the writer has taken every flush sent to it (it may still be
    /// writing the last one).
    pub(super) fn writer_caught_up(&self) -> bool {
        self.flush_tx.capacity() == self.flush_tx.max_capacity()
    }

    /// When the loop should wake for deferred work: now if the writer caught up, else
    /// in a millisecond to look again (the writer does not signal it took a flush).
    pub(super) fn backlog_due(&self) -> Option<i64> {
        if self.deferred_runs.is_empty() && !self.admit_backlog {
            return None;
        }
        let now = self.config.clock.now_ms();
        Some(if self.writer_caught_up() {
            now
        } else {
            now + 1
        })
    }
}
