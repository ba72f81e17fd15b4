//! Admission at the end of a batch: waiting tasks the shared limits now allow, and
//! tasks deferred because a flush had no room left for them (a run of 100,000 ready
//! tasks is dispatched in slices, see [`DISPATCH_SLICE`]). Which runs a pass visits is
//! [`Parking`]'s business: the ready ones, then those parked on a key that freed up.

use super::core::Core;
#[cfg(doc)]
use super::core::DISPATCH_SLICE;
use super::limiter::{Limiter, Refused};
use super::parking::Class;
#[cfg(doc)]
use super::parking::Parking;
#[cfg(doc)]
use super::EngineConfig;
use crate::dag::KeyLimit;
use crate::state_machine::{Gate, TaskState};
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

/// Runs the sweep visits per pass, whatever else is due: a lost wake is found within
/// (runs waiting / SWEEP) passes.
pub(super) const SWEEP: usize = 4;

/// Runs the sweep visits per housekeeping tick, so a lost wake is found within
/// seconds on an idle engine too.
pub(super) const SWEEP_PER_TICK: usize = 256;

/// The core's [`Gate`]: the shared limiter, asked on behalf of one run.
struct SharedLimits<'a> {
    limiter: &'a mut Limiter,
    run: &'a Arc<str>,
    now_ms: i64,
    /// What turned the run's tasks away during this visit.
    refused: &'a mut Vec<Refused>,
}

impl Gate for SharedLimits<'_> {
    fn try_acquire(
        &mut self,
        task: u32,
        attempt: u32,
        keys: &[(String, KeyLimit)],
        tokens: u64,
    ) -> bool {
        let got = self
            .limiter
            .try_acquire(self.run, task, attempt, keys, tokens, self.now_ms);
        if let Some(r) = self.limiter.take_refused().filter(|_| !got) {
            self.refused.push(r);
        }
        got
    }
}

/// What one visit of a run did.
struct Visit {
    admitted: usize,
    refused: Vec<Refused>,
}

impl Core {
    /// Dispatches what waiting tasks their runs' limits, budgets and the shared limits
    /// now allow: the runs something of their own changed for, then the runs parked
    /// on keys that freed up, oldest first; then a few runs round-robin ([`SWEEP`]).
    pub(super) fn admit_waiting(&mut self) {
        let now = self.config.clock.now_ms();
        let woke = self.parking.wake_timed(now);
        let carry_on = self.admit_backlog && self.writer_caught_up();
        if std::mem::take(&mut self.admit_due) || woke || carry_on {
            self.admit_backlog = false;
            while self.room > 0 {
                let Some(id) = self.parking.next_ready() else {
                    break;
                };
                self.visit(&id);
            }
            while self.room > 0 {
                let Some(class) = self.parking.next_due() else {
                    break;
                };
                self.serve(class);
            }
        }
        self.sweep(SWEEP);
        // Out of room: what is left goes once the writer caught up.
        self.admit_backlog = self.room == 0 && self.parking.has_work();
    }

    /// Visits the runs parked on `class` in the order they parked, until one is
    /// refused by it again (the rest would be too) or the room runs out.
    fn serve(&mut self, class: Class) {
        while let Some(id) = self.parking.head(&class) {
            if self.room == 0 {
                self.parking.still_due(class);
                return;
            }
            let visit = self.visit(&id);
            if visit.refused.iter().any(|r| Class::from(r) == class) {
                return;
            }
            if self.room == 0 && visit.admitted > 0 {
                // It may have had more for this class than the room allowed.
                self.parking.still_due(class);
                return;
            }
            // Held back by something else, or nothing left for this class.
            self.parking.unpark(&id, &class);
        }
    }

    /// Visits up to `n` runs with waiting tasks round-robin, whatever woke; anything
    /// they admit is a wake that was lost, and is counted.
    pub(super) fn sweep(&mut self, n: usize) {
        if self.room == 0 {
            return;
        }
        for id in self.parking.sweep(n) {
            let visit = self.visit(&id);
            if visit.admitted > 0 {
                self.sweep_admitted += visit.admitted as u64;
                metrics::counter!("apex_admission_sweep_admitted_total")
                    .increment(visit.admitted as u64);
                tracing::warn!(run = %id, admitted = visit.admitted, "admission sweep admitted tasks no wake had");
            }
            if self.room == 0 {
                return;
            }
        }
    }

    /// Admits what run `id` may now dispatch, and parks it on what refused it.
    fn visit(&mut self, id: &Arc<str>) -> Visit {
        let mut visit = Visit {
            admitted: 0,
            refused: Vec::new(),
        };
        if !self.runs.get(id).is_some_and(|r| r.machine.has_waiting()) {
            self.parking.forget(id);
            return visit;
        }
        let now = self.config.clock.now_ms();
        let room = self.room;
        // Out of `self` while the run's machine asks it: `apply` borrows `self`.
        let mut limiter = std::mem::take(&mut self.limiter);
        self.visiting = Some(Arc::clone(id));
        let _ = self.apply(id, |m, o| {
            let mut gate = SharedLimits {
                limiter: &mut limiter,
                run: id,
                now_ms: now,
                refused: &mut visit.refused,
            };
            m.admit(now, &mut gate, o);
            Ok(())
        });
        self.visiting = None;
        self.limiter = limiter;
        visit.admitted = room - self.room;
        if !self.runs.get(id).is_some_and(|r| r.machine.has_waiting()) {
            self.parking.forget(id);
            return visit;
        }
        for r in &visit.refused {
            self.parking.park(id, r);
        }
        if self.room == 0 {
            // It may have more it could admit: first in line next pass.
            self.parking.ready_first(id);
        }
        visit
    }

    /// Admission as it was before runs were parked: every run with waiting tasks is
    /// visited. The reference a pass must leave nothing for; returns what it admitted.
    #[cfg(test)]
    pub(super) fn admit_every_run(&mut self) -> usize {
        let ids: Vec<Arc<str>> = self
            .runs
            .iter()
            .filter(|(_, r)| r.machine.has_waiting())
            .map(|(id, _)| Arc::clone(id))
            .collect();
        let room = self.room;
        for id in ids {
            let now = self.config.clock.now_ms();
            let mut limiter = std::mem::take(&mut self.limiter);
            let mut refused = Vec::new();
            let _ = self.apply(&id, |m, o| {
                let mut gate = SharedLimits {
                    limiter: &mut limiter,
                    run: &id,
                    now_ms: now,
                    refused: &mut refused,
                };
                m.admit(now, &mut gate, o);
                Ok(())
            });
            self.limiter = limiter;
        }
        room - self.room
    }

    /// Resolves tasks deferred for lack of room, as far as this batch's room allows,
    /// but only once the writer has taken every earlier flush: slices go no faster
    /// than they are written, so at most about two are held at once. Runs are visited
    /// in turn, and one that still has tasks deferred after its visit goes to the back:
    /// a small run deferred behind a wide one waits for one slice of it, not all.
    pub(super) fn release_deferred(&mut self) {
        if self.deferred_runs.is_empty() || self.room == 0 || !self.writer_caught_up() {
            return;
        }
        for _ in 0..self.deferred_runs.len() {
            if self.room == 0 {
                break;
            }
            let Some(id) = self.deferred_runs.next() else {
                break;
            };
            let Some(backlog) = self.backlog_room(&id) else {
                continue;
            };
            if backlog == 0 {
                // Its queue holds enough of it already; a start frees room.
                self.deferred_runs.insert(&id);
                continue;
            }
            let now = self.config.clock.now_ms();
            let (room, given) = (self.room, self.room.min(backlog));
            self.room = given;
            // `apply` puts the run back, at the end, if it still has tasks deferred.
            let _ = self.apply(&id, |m, o| {
                m.release_deferred(now, o);
                Ok(())
            });
            self.room = room - (given - self.room);
        }
    }

    /// How many more of run `id`'s deferred tasks may go to its queue now: the run's
    /// backlog there is kept under [`EngineConfig::run_backlog`] (a run on one queue;
    /// one across several is not held), so a run released in slices does not fill a
    /// shared queue ahead of the runs submitted after it. `None` when the run is gone or
    /// has nothing deferred (a cancel cleared it): it leaves the turn order.
    ///
    /// Topped up once half of it has gone, so each release is worth the writer's
    /// statement. What is left goes at once when it is no more than the backlog (others
    /// then wait behind at most twice that): a run a little wider than a slice (W1's
    /// 20,000) is not held at all, since its held tasks' `pending` → `queued` updates,
    /// moved from the run's first moments into its busiest, cost it ~6 %.
    fn backlog_room(&self, id: &Arc<str>) -> Option<usize> {
        let m = &self.runs.get(id)?.machine;
        if !m.has_deferred() {
            return None;
        }
        if m.dag().mixed_queues() {
            // Its count of queued tasks spans queues: a backlog on one whose workers
            // are slow or absent must not hold back the tasks of another.
            return Some(usize::MAX);
        }
        let queued = m.counts()[TaskState::Queued as usize] as usize;
        let backlog = self.config.run_backlog;
        let room = backlog.saturating_sub(queued);
        let left = m.deferred_len();
        Some(if left <= backlog {
            left
        } else if room >= backlog.div_ceil(2) {
            room
        } else {
            0
        })
    }

    /// True when the writer has taken every flush sent to it (it may still be
    /// writing the last one).
    pub(super) fn writer_caught_up(&self) -> bool {
        self.flush_tx.capacity() == self.flush_tx.max_capacity()
    }

    /// When the loop should wake for deferred work: now if the writer caught up, else
    /// in a millisecond to look again (the writer does not signal it took a flush).
    pub(super) fn backlog_due(&self) -> Option<i64> {
        // A run held back by its queue's backlog is released by a later batch: the
        // report of a start that frees its room wakes the loop anyway.
        let releasable = self
            .deferred_runs
            .iter()
            .any(|id| self.backlog_room(id).is_some_and(|n| n > 0));
        if !releasable && !self.admit_backlog {
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

/// Runs with deferred tasks, each once, in the order [`Core::release_deferred`] serves
/// them.
#[derive(Default)]
pub(super) struct DeferredRuns {
    order: VecDeque<Arc<str>>,
    queued: HashSet<Arc<str>>,
}

impl DeferredRuns {
    /// Puts `id` at the back, unless it is already waiting.
    pub(super) fn insert(&mut self, id: &Arc<str>) {
        if self.queued.insert(Arc::clone(id)) {
            self.order.push_back(Arc::clone(id));
        }
    }

    /// Takes the run whose turn it is.
    pub(super) fn next(&mut self) -> Option<Arc<str>> {
        let id = self.order.pop_front()?;
        self.queued.remove(&id);
        Some(id)
    }

    /// The runs waiting, in turn order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &Arc<str>> {
        self.order.iter()
    }

    /// Runs waiting.
    pub(super) fn len(&self) -> usize {
        self.order.len()
    }

    /// True when no run has tasks deferred.
    pub(super) fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}
