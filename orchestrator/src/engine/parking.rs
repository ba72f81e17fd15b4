//! Runs waiting for admission, parked on what turned them away, so a pass visits the
//! runs that may now go instead of every run with waiting tasks.
//!
//! A run is *ready* (visited at the next pass) when something of its own changed: it
//! started, a task of it ended, a budget was raised. A run the shared limiter refused
//! is *parked* on the refusing key's [`Class`]: the key with the limit in force for
//! that run, since runs held to the same limit on a key are refused and admitted
//! alike. A class is *due* when one of its key's slots is released, when a token
//! report may have shrunk its window, or when its rolling window reopens; its runs are
//! then visited in the order they parked until one is refused again. A pass so costs
//! what it admits plus one refusal per due class, however many runs are parked.
//!
//! A run held back by its own limits (`max_parallel`, its budget) is neither ready nor
//! parked: the change that frees it is one of its own, which makes it ready.
//!
//! A wake lost to a bug would strand tasks for ever, so every pass also visits a few
//! runs with waiting tasks, round-robin ([`Parking::sweep`]); the engine counts what
//! that sweep admits (`apex_admission_sweep_admitted_total`), which should stay 0.

use super::limiter::Refused;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

/// A shared key with the limit in force (the run's own, tightened by the operator's
/// ceiling): every run with the same class is refused or admitted alike.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct Class {
    pub key: String,
    pub max_concurrency: Option<u32>,
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
}

impl From<&Refused> for Class {
    fn from(r: &Refused) -> Self {
        Self {
            key: r.key.clone(),
            max_concurrency: r.limit.max_concurrency,
            rpm: r.limit.rpm,
            tpm: r.limit.tpm,
        }
    }
}

/// Which runs admission visits next, and where the others wait.
#[derive(Debug, Default)]
pub(super) struct Parking {
    /// Runs to visit at the next pass, in the order they became ready; an entry whose
    /// run is no longer in `is_ready` is stale and skipped.
    ready: VecDeque<Arc<str>>,
    is_ready: HashSet<Arc<str>>,
    /// The runs parked on each class, by when they parked.
    queues: HashMap<Class, BTreeMap<u64, Arc<str>>>,
    /// The classes with parked runs, per key, so a freed key finds them.
    classes_of_key: HashMap<String, HashSet<Class>>,
    /// Where each parked run sits: class and place.
    parked: HashMap<Arc<str>, HashMap<Class, u64>>,
    /// Classes to serve at the next pass.
    due: BTreeSet<Class>,
    /// Classes a rolling window refused, by when that window frees up.
    timed: BinaryHeap<Reverse<(i64, Class)>>,
    /// The earliest wake of each class in `timed`, so refusals add no duplicates.
    timed_at: HashMap<Class, i64>,
    /// Places handed out so far.
    seq: u64,
    /// Every run with waiting tasks, for the sweep.
    waiting: BTreeSet<Arc<str>>,
    /// Where the sweep goes on from: the last run it visited.
    swept: Option<Arc<str>>,
}

impl Parking {
    /// `run` has waiting tasks and something of its own changed: visit it next pass.
    pub fn ready(&mut self, run: &Arc<str>) {
        if !self.waiting.contains(run) {
            self.waiting.insert(Arc::clone(run));
        }
        if self.is_ready.insert(Arc::clone(run)) {
            self.ready.push_back(Arc::clone(run));
        }
    }

    /// `run` has waiting tasks: the sweep should know it, but nothing changed for it.
    pub fn known(&mut self, run: &Arc<str>) {
        if !self.waiting.contains(run) {
            self.waiting.insert(Arc::clone(run));
        }
    }

    /// The next ready run, oldest first.
    pub fn next_ready(&mut self) -> Option<Arc<str>> {
        while let Some(run) = self.ready.pop_front() {
            if self.is_ready.remove(&run) {
                return Some(run);
            }
        }
        None
    }

    /// `run` was taken to visit but the pass ran out of room: first in line next pass.
    pub fn ready_first(&mut self, run: &Arc<str>) {
        if self.is_ready.insert(Arc::clone(run)) {
            self.ready.push_front(Arc::clone(run));
        }
    }

    /// The limiter refused `run`: it waits on the class, keeping its place if it
    /// already did; a rolling window that refused it wakes the class when it frees up.
    pub fn park(&mut self, run: &Arc<str>, refused: &Refused) {
        let class = Class::from(refused);
        if let Some(at) = refused.wake_at_ms {
            if self.timed_at.get(&class).is_none_or(|&t| at < t) {
                self.timed_at.insert(class.clone(), at);
                self.timed.push(Reverse((at, class.clone())));
            }
        }
        let places = self.parked.entry(Arc::clone(run)).or_default();
        if places.contains_key(&class) {
            return;
        }
        self.seq += 1;
        places.insert(class.clone(), self.seq);
        self.queues
            .entry(class.clone())
            .or_default()
            .insert(self.seq, Arc::clone(run));
        self.classes_of_key
            .entry(class.key.clone())
            .or_default()
            .insert(class);
    }

    /// `run` no longer waits on `class`.
    pub fn unpark(&mut self, run: &Arc<str>, class: &Class) {
        let Some(places) = self.parked.get_mut(run) else {
            return;
        };
        let Some(seq) = places.remove(class) else {
            return;
        };
        if places.is_empty() {
            self.parked.remove(run);
        }
        let Some(queue) = self.queues.get_mut(class) else {
            return;
        };
        queue.remove(&seq);
        if queue.is_empty() {
            self.queues.remove(class);
            if let Some(classes) = self.classes_of_key.get_mut(&class.key) {
                classes.remove(class);
                if classes.is_empty() {
                    self.classes_of_key.remove(&class.key);
                }
            }
        }
    }

    /// `run` has nothing waiting any more (or is gone): it leaves every list.
    pub fn forget(&mut self, run: &Arc<str>) {
        // Ready and parked runs are among the waiting ones.
        if !self.waiting.remove(run) {
            return;
        }
        self.is_ready.remove(run);
        let classes: Vec<Class> = self
            .parked
            .get(run)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        for class in classes {
            self.unpark(run, &class);
        }
    }

    /// A slot of `key` was released, or its token window shrank: the runs parked on
    /// it may go.
    pub fn freed(&mut self, key: &str) {
        if let Some(classes) = self.classes_of_key.get(key) {
            self.due.extend(classes.iter().cloned());
        }
    }

    /// Makes due every class whose window has freed up by `now_ms`; true if any.
    pub fn wake_timed(&mut self, now_ms: i64) -> bool {
        let mut woke = false;
        while let Some(Reverse((at, _))) = self.timed.peek() {
            if *at > now_ms {
                break;
            }
            let Reverse((at, class)) = self.timed.pop().expect("peeked");
            if self.timed_at.get(&class) == Some(&at) {
                self.timed_at.remove(&class);
            }
            if self.queues.contains_key(&class) {
                self.due.insert(class);
                woke = true;
            }
        }
        woke
    }

    /// When the earliest rolling window that refused a run frees up.
    pub fn next_wake(&self) -> Option<i64> {
        self.timed.peek().map(|Reverse((at, _))| *at)
    }

    /// A class to serve, if any is due.
    pub fn next_due(&mut self) -> Option<Class> {
        self.due.pop_first()
    }

    /// `class` could not be served to the end for lack of room: it stays due.
    pub fn still_due(&mut self, class: Class) {
        self.due.insert(class);
    }

    /// The run that has waited longest on `class`.
    pub fn head(&self, class: &Class) -> Option<Arc<str>> {
        self.queues
            .get(class)
            .and_then(|q| q.first_key_value())
            .map(|(_, run)| Arc::clone(run))
    }

    /// True when a pass has runs to visit or classes to serve.
    pub fn has_work(&self) -> bool {
        !self.is_ready.is_empty() || !self.due.is_empty()
    }

    /// Up to `n` runs with waiting tasks, going on round-robin from the last sweep.
    pub fn sweep(&mut self, n: usize) -> Vec<Arc<str>> {
        let n = n.min(self.waiting.len());
        let mut out = Vec::with_capacity(n);
        let after = match &self.swept {
            Some(last) => Bound::Excluded(Arc::clone(last)),
            None => Bound::Unbounded,
        };
        out.extend(
            self.waiting
                .range::<Arc<str>, _>((after, Bound::Unbounded))
                .take(n)
                .cloned(),
        );
        if out.len() < n {
            let more = n - out.len();
            let wrapped: Vec<Arc<str>> = self
                .waiting
                .iter()
                .take(more)
                .filter(|r| !out.contains(r))
                .cloned()
                .collect();
            out.extend(wrapped);
        }
        self.swept = out.last().cloned().or_else(|| self.swept.take());
        out
    }

    /// Runs with waiting tasks known to admission.
    #[cfg(test)]
    pub fn waiting_len(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dag::KeyLimit;

    fn refused(key: &str, max: u32, wake_at_ms: Option<i64>) -> Refused {
        Refused {
            key: key.to_owned(),
            limit: KeyLimit {
                max_concurrency: Some(max),
                ..KeyLimit::default()
            },
            wake_at_ms,
        }
    }

    fn id(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    #[test]
    fn parked_runs_keep_their_place_and_wake_by_key() {
        let mut p = Parking::default();
        let (a, b, c) = (id("a"), id("b"), id("c"));
        for r in [&a, &b, &c] {
            p.ready(r);
        }
        assert_eq!(p.next_ready(), Some(a.clone()));
        p.park(&a, &refused("key:k", 1, None));
        p.park(&b, &refused("key:k", 1, None));
        p.park(&c, &refused("key:k", 2, None));
        p.park(&a, &refused("key:k", 1, None)); // already parked: keeps its place
        assert_eq!(p.next_ready(), Some(b.clone()));
        assert_eq!(p.next_ready(), Some(c.clone()));
        assert_eq!(p.next_ready(), None);
        assert!(!p.has_work());
        p.freed("key:other");
        assert!(!p.has_work());
        p.freed("key:k");
        let one = p.next_due().unwrap();
        let two = p.next_due().unwrap();
        assert_eq!(p.next_due(), None);
        assert_eq!(p.head(&one), Some(a.clone()), "limit 1: a parked first");
        assert_eq!(p.head(&two), Some(c.clone()), "limit 2: c alone");
        p.unpark(&a, &one);
        assert_eq!(p.head(&one), Some(b.clone()));
        p.forget(&b);
        assert_eq!(p.head(&one), None);
        assert_eq!(p.waiting_len(), 2);
    }

    #[test]
    fn a_window_wakes_its_class_when_it_reopens() {
        let mut p = Parking::default();
        let a = id("a");
        p.park(&a, &refused("key:k", 1, Some(60_000)));
        assert_eq!(p.next_wake(), Some(60_000));
        assert!(!p.wake_timed(59_999));
        assert!(p.wake_timed(60_000));
        assert_eq!(p.next_wake(), None);
        let class = p.next_due().unwrap();
        assert_eq!(p.head(&class), Some(a));
    }

    #[test]
    fn the_sweep_goes_round_every_waiting_run() {
        let mut p = Parking::default();
        let runs: Vec<Arc<str>> = (0..5).map(|i| id(&format!("r{i}"))).collect();
        for r in &runs {
            p.known(r);
        }
        let mut seen = Vec::new();
        for _ in 0..5 {
            seen.extend(p.sweep(2));
        }
        assert_eq!(seen.len(), 10);
        for r in &runs {
            assert_eq!(seen.iter().filter(|s| *s == r).count(), 2, "{r}");
        }
        p.forget(&runs[0]);
        assert!(!p.sweep(10).contains(&runs[0]));
        assert_eq!(p.sweep(10).len(), 4);
    }
}
