//! Limits shared by every run: attempts in flight per key (an agent's, a
//! `concurrency_key`'s), and requests and tokens per rolling minute per key, each the
//! tighter of the run's limit and the operator's ceiling ([`Ceilings`]). Pure
//! bookkeeping; the core asks it before dispatching a gated task and tells it when
//! attempts end.

use crate::ceilings::Ceilings;
use crate::dag::KeyLimit;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// The rolling window of `rpm` and `tpm`.
const WINDOW_MS: i64 = 60_000;

/// One attempt: run, task, attempt number.
type AttemptId = (Arc<str>, u32, u32);

/// One dispatch inside a key's window.
#[derive(Debug, Clone)]
struct Dispatch {
    at_ms: i64,
    attempt: AttemptId,
    /// Estimated at dispatch; what the attempt reported once it ends.
    tokens: u64,
}

/// One key's dispatches of the last minute, oldest first, with their token total kept
/// as entries come, go and are corrected, so a check costs O(1), not O(window).
#[derive(Debug, Default)]
struct Window {
    entries: VecDeque<Dispatch>,
    /// Tokens of `entries`.
    tokens: u64,
    /// Sequence number of `entries[0]`; entry `n` is number `first + n`, so a dispatch
    /// is found by number however many older ones left before it.
    first: u64,
}

impl Window {
    /// Drops dispatches that left the minute before `now_ms`, and their index entries.
    fn expire(
        &mut self,
        key: &str,
        now_ms: i64,
        index: &mut HashMap<AttemptId, Vec<(String, u64)>>,
    ) {
        while let Some(d) = self
            .entries
            .front()
            .filter(|d| d.at_ms <= now_ms - WINDOW_MS)
        {
            if let Some(places) = index.get_mut(&d.attempt) {
                places.retain(|(k, n)| !(k == key && *n == self.first));
                if places.is_empty() {
                    index.remove(&d.attempt);
                }
            }
            self.tokens -= d.tokens;
            self.entries.pop_front();
            self.first += 1;
        }
    }

    /// Appends a dispatch; returns its sequence number.
    fn push(&mut self, d: Dispatch) -> u64 {
        self.tokens += d.tokens;
        self.entries.push_back(d);
        self.first + self.entries.len() as u64 - 1
    }
}

/// Why the limiter last turned an attempt away: the key, the limit in force for the
/// asking run, and, when a rolling window was full, when it frees up.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub key: String,
    pub limit: KeyLimit,
    pub wake_at_ms: Option<i64>,
}

/// Slots and windows of every key.
#[derive(Debug, Default)]
pub struct Limiter {
    /// The operator's limits, which tighten every run's.
    ceilings: Ceilings,
    in_flight: HashMap<String, u32>,
    windows: HashMap<String, Window>,
    /// Where each attempt still in some window sits: (key, sequence number), so its
    /// reported tokens replace its estimate without a search.
    placed: HashMap<AttemptId, Vec<(String, u64)>>,
    /// The keys each attempt in flight holds, by (run, task).
    held: HashMap<(Arc<str>, u32), Vec<String>>,
    /// What refused the last attempt turned away, for admission to park its run on.
    refused: Option<Refused>,
}

impl Limiter {
    /// A limiter that holds every run to `ceilings` as well as to its own limits.
    pub fn new(ceilings: Ceilings) -> Self {
        Self {
            ceilings,
            ..Self::default()
        }
    }

    /// Takes a slot of every key for `attempt` of `task` in `run` if all allow it at
    /// `now_ms`; otherwise takes nothing. `keys` carry the run's limits; the operator's
    /// ceilings tighten them.
    pub fn try_acquire(
        &mut self,
        run: &Arc<str>,
        task: u32,
        attempt: u32,
        keys: &[(String, KeyLimit)],
        tokens: u64,
        now_ms: i64,
    ) -> bool {
        for (key, limit) in keys {
            let limit = self.ceilings.apply(key, *limit);
            if let Some(max) = limit.max_concurrency {
                if self.in_flight.get(key).copied().unwrap_or(0) >= max {
                    self.refused = Some(Refused {
                        key: key.clone(),
                        limit,
                        wake_at_ms: None,
                    });
                    return false;
                }
            }
            if limit.rpm.is_none() && limit.tpm.is_none() {
                continue;
            }
            let window = self.windows.entry(key.clone()).or_default();
            window.expire(key, now_ms, &mut self.placed);
            let over_rpm = limit
                .rpm
                .is_some_and(|r| window.entries.len() >= r as usize);
            // An empty window admits anything: one task bigger than the whole minute's
            // allowance must still run eventually.
            let over_tpm = limit
                .tpm
                .is_some_and(|t| !window.entries.is_empty() && window.tokens + tokens > t);
            if over_rpm || over_tpm {
                let at = window.entries.front().map(|d| d.at_ms + WINDOW_MS);
                self.refused = Some(Refused {
                    key: key.clone(),
                    limit,
                    wake_at_ms: at,
                });
                return false;
            }
        }
        for (key, limit) in keys {
            *self.in_flight.entry(key.clone()).or_default() += 1;
            let limit = self.ceilings.apply(key, *limit);
            if limit.rpm.is_some() || limit.tpm.is_some() {
                let id = (Arc::clone(run), task, attempt);
                let d = Dispatch {
                    at_ms: now_ms,
                    attempt: id.clone(),
                    tokens,
                };
                let n = self.windows.entry(key.clone()).or_default().push(d);
                self.placed.entry(id).or_default().push((key.clone(), n));
            }
        }
        if !keys.is_empty() {
            let keys = keys.iter().map(|(k, _)| k.clone()).collect();
            self.held.insert((Arc::clone(run), task), keys);
        }
        true
    }

    /// Holds the slots of an attempt already in flight (found running after a restart),
    /// whatever the limits say now.
    pub fn hold(&mut self, run: &Arc<str>, task: u32, keys: &[(String, KeyLimit)]) {
        if keys.is_empty() || self.held.contains_key(&(Arc::clone(run), task)) {
            return;
        }
        for (key, _) in keys {
            *self.in_flight.entry(key.clone()).or_default() += 1;
        }
        let keys = keys.iter().map(|(k, _)| k.clone()).collect();
        self.held.insert((Arc::clone(run), task), keys);
    }

    /// The attempt of `task` in `run` ended: its slots free up. Returns the keys freed.
    pub fn release(&mut self, run: &Arc<str>, task: u32) -> Vec<String> {
        let Some(held) = self.held.remove(&(Arc::clone(run), task)) else {
            return Vec::new();
        };
        for key in &held {
            if let Some(n) = self.in_flight.get_mut(key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.in_flight.remove(key);
                }
            }
        }
        held
    }

    /// `attempt` of `task` in `run` reported using `tokens`: its place in the token
    /// windows counts that instead of the estimate. Returns the keys whose window now
    /// holds fewer tokens (room for a task they turned away).
    pub fn report_tokens(
        &mut self,
        run: &Arc<str>,
        task: u32,
        attempt: u32,
        tokens: u64,
    ) -> Vec<String> {
        let mut shrunk = Vec::new();
        let Some(places) = self.placed.get(&(Arc::clone(run), task, attempt)) else {
            return shrunk;
        };
        for (key, n) in places {
            let Some(w) = self.windows.get_mut(key) else {
                continue;
            };
            if let Some(d) = n
                .checked_sub(w.first)
                .and_then(|k| w.entries.get_mut(k as usize))
            {
                if tokens < d.tokens {
                    shrunk.push(key.clone());
                }
                w.tokens = w.tokens - d.tokens + tokens;
                d.tokens = tokens;
            }
        }
        shrunk
    }

    /// True when `run`'s `task` holds slots.
    pub fn holds(&self, run: &Arc<str>, task: u32) -> bool {
        self.held.contains_key(&(Arc::clone(run), task))
    }

    /// Attempts in flight under `key`.
    #[cfg(test)]
    pub fn in_flight(&self, key: &str) -> u32 {
        self.in_flight.get(key).copied().unwrap_or(0)
    }

    /// What turned the last refused attempt away; cleared by reading it.
    pub fn take_refused(&mut self) -> Option<Refused> {
        self.refused.take()
    }

    /// When the rolling window that turned the last attempt away frees up.
    #[cfg(test)]
    pub fn take_wake(&mut self) -> Option<i64> {
        self.refused.take().and_then(|r| r.wake_at_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> Arc<str> {
        Arc::from("r")
    }

    fn limit(max: Option<u32>, rpm: Option<u32>, tpm: Option<u64>) -> KeyLimit {
        KeyLimit {
            max_concurrency: max,
            rpm,
            tpm,
        }
    }

    #[test]
    fn concurrency_frees_a_slot_when_an_attempt_ends() {
        let mut l = Limiter::default();
        let keys = vec![("key:openai".to_owned(), limit(Some(2), None, None))];
        assert!(l.try_acquire(&run(), 0, 1, &keys, 0, 0));
        assert!(l.try_acquire(&run(), 1, 1, &keys, 0, 0));
        assert!(!l.try_acquire(&run(), 2, 1, &keys, 0, 0));
        assert_eq!(l.in_flight("key:openai"), 2);
        l.release(&run(), 0);
        assert!(l.try_acquire(&run(), 2, 1, &keys, 0, 0));
        l.release(&run(), 0); // already released: no effect
        assert_eq!(l.in_flight("key:openai"), 2);
    }

    #[test]
    fn a_task_blocked_on_one_key_takes_no_slot_of_another() {
        let mut l = Limiter::default();
        let a = ("agent:a".to_owned(), limit(Some(5), None, None));
        let full = ("key:full".to_owned(), limit(Some(1), None, None));
        assert!(l.try_acquire(&run(), 0, 1, std::slice::from_ref(&full), 0, 0));
        assert!(!l.try_acquire(&run(), 1, 1, &[a.clone(), full], 0, 0));
        assert_eq!(l.in_flight("agent:a"), 0);
    }

    #[test]
    fn rpm_admits_again_once_the_oldest_request_leaves_the_minute() {
        let mut l = Limiter::default();
        let keys = vec![("key:k".to_owned(), limit(None, Some(2), None))];
        assert!(l.try_acquire(&run(), 0, 1, &keys, 0, 1_000));
        assert!(l.try_acquire(&run(), 1, 1, &keys, 0, 2_000));
        assert!(!l.try_acquire(&run(), 2, 1, &keys, 0, 30_000));
        assert_eq!(l.take_wake(), Some(61_000));
        assert!(l.try_acquire(&run(), 2, 1, &keys, 0, 61_000));
    }

    #[test]
    fn tpm_counts_reported_tokens_once_an_attempt_ends() {
        let mut l = Limiter::default();
        let keys = vec![("key:k".to_owned(), limit(None, None, Some(1_000)))];
        assert!(l.try_acquire(&run(), 0, 1, &keys, 900, 0));
        assert!(!l.try_acquire(&run(), 1, 1, &keys, 200, 10));
        l.release(&run(), 0);
        l.report_tokens(&run(), 0, 1, 100);
        assert!(l.try_acquire(&run(), 1, 1, &keys, 200, 20));
        // A task bigger than the whole allowance runs alone once the window is empty.
        assert!(!l.try_acquire(&run(), 2, 1, &keys, 5_000, 30));
        assert!(l.try_acquire(&run(), 2, 1, &keys, 5_000, 60_021));
    }

    #[test]
    fn operator_ceilings_hold_runs_that_set_no_limit_or_a_looser_one() {
        let ceilings = Ceilings::parse(
            r#"{"provider:fake": {"max_concurrency": 2}, "agent:solo": {"rpm": 1}}"#,
        )
        .unwrap();
        let mut l = Limiter::new(ceilings);
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let unlimited = vec![("key:provider:fake".to_owned(), KeyLimit::default())];
        let looser = vec![("key:provider:fake".to_owned(), limit(Some(10), None, None))];
        let tighter = vec![("key:provider:fake".to_owned(), limit(Some(1), None, None))];
        assert!(l.try_acquire(&a, 0, 1, &unlimited, 0, 0));
        assert!(
            !l.try_acquire(&b, 0, 1, &tighter, 0, 0),
            "the run's own 1 applies"
        );
        assert!(l.try_acquire(&b, 0, 1, &looser, 0, 0));
        assert!(!l.try_acquire(&a, 1, 1, &unlimited, 0, 0), "2 across runs");
        assert!(!l.try_acquire(&b, 1, 1, &looser, 0, 0), "10 is not allowed");
        // An agent key the run does not limit at all is rate-limited by the operator.
        let solo = vec![("agent:solo".to_owned(), KeyLimit::default())];
        assert!(l.try_acquire(&a, 2, 1, &solo, 0, 0));
        assert!(!l.try_acquire(&b, 2, 1, &solo, 0, 1_000));
        assert_eq!(l.take_wake(), Some(60_000));
    }

    /// The limiter as it was before windows kept running sums: every check re-adds the
    /// whole window. The reference the running sums must agree with.
    #[derive(Default)]
    struct Summing {
        in_flight: HashMap<String, u32>,
        windows: HashMap<String, VecDeque<(i64, AttemptId, u64)>>,
        held: HashMap<(Arc<str>, u32), Vec<String>>,
        wake_at_ms: Option<i64>,
    }

    impl Summing {
        fn try_acquire(
            &mut self,
            id: AttemptId,
            keys: &[(String, KeyLimit)],
            tokens: u64,
            now_ms: i64,
        ) -> bool {
            for (key, limit) in keys {
                if let Some(max) = limit.max_concurrency {
                    if self.in_flight.get(key).copied().unwrap_or(0) >= max {
                        return false;
                    }
                }
                if limit.rpm.is_none() && limit.tpm.is_none() {
                    continue;
                }
                let window = self.windows.entry(key.clone()).or_default();
                while window.front().is_some_and(|d| d.0 <= now_ms - WINDOW_MS) {
                    window.pop_front();
                }
                let frees_at = window.front().map(|d| d.0 + WINDOW_MS);
                let over_rpm = limit.rpm.is_some_and(|r| window.len() >= r as usize);
                let used: u64 = window.iter().map(|d| d.2).sum();
                let over_tpm = limit
                    .tpm
                    .is_some_and(|t| !window.is_empty() && used + tokens > t);
                if over_rpm || over_tpm {
                    if let Some(at) = frees_at {
                        self.wake_at_ms = Some(self.wake_at_ms.map_or(at, |w| w.min(at)));
                    }
                    return false;
                }
            }
            for (key, limit) in keys {
                *self.in_flight.entry(key.clone()).or_default() += 1;
                if limit.rpm.is_some() || limit.tpm.is_some() {
                    let window = self.windows.entry(key.clone()).or_default();
                    window.push_back((now_ms, id.clone(), tokens));
                }
            }
            if !keys.is_empty() {
                let held = keys.iter().map(|(k, _)| k.clone()).collect();
                self.held.insert((Arc::clone(&id.0), id.1), held);
            }
            true
        }

        fn release(&mut self, run: &Arc<str>, task: u32) {
            for key in self
                .held
                .remove(&(Arc::clone(run), task))
                .unwrap_or_default()
            {
                if let Some(n) = self.in_flight.get_mut(&key) {
                    *n = n.saturating_sub(1);
                }
            }
        }

        fn report_tokens(&mut self, id: &AttemptId, tokens: u64) {
            for window in self.windows.values_mut() {
                for d in window.iter_mut().filter(|d| d.1 == *id) {
                    d.2 = tokens;
                }
            }
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// `keys` is a bit mask over three keys; the clock moves `after_ms` first.
        Acquire {
            run: bool,
            task: u32,
            keys: u8,
            tokens: u64,
            after_ms: i64,
        },
        Release {
            run: bool,
            task: u32,
        },
        /// Reports tokens for the `nth` acquisition made so far (modulo their count).
        Report {
            nth: usize,
            tokens: u64,
        },
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            4 => (any::<bool>(), 0..6u32, 1..8u8, 0..3_000u64, 0..25_000i64).prop_map(
                |(run, task, keys, tokens, after_ms)| Op::Acquire { run, task, keys, tokens, after_ms }
            ),
            2 => (any::<bool>(), 0..6u32).prop_map(|(run, task)| Op::Release { run, task }),
            1 => (any::<usize>(), 0..3_000u64).prop_map(|(nth, tokens)| Op::Report { nth, tokens }),
        ]
    }

    fn key_limit() -> impl proptest::strategy::Strategy<Value = KeyLimit> {
        use proptest::prelude::*;
        (
            proptest::option::of(1..4u32),
            proptest::option::of(1..6u32),
            proptest::option::of(500..5_000u64),
        )
            .prop_map(|(m, r, t)| limit(m, r, t))
    }

    proptest::proptest! {
        /// Running sums and the index of placed dispatches decide exactly as re-adding
        /// every window on every check did (with the operator's ceilings applied to
        /// the reference's limits up front).
        #[test]
        fn running_sums_decide_as_re_adding_the_window_did(
            runs in proptest::collection::vec(key_limit(), 3),
            ceilings in proptest::collection::vec(proptest::option::of(key_limit()), 3),
            ops in proptest::collection::vec(op(), 1..200),
        ) {
            let names = ["key:a", "key:b", "agent:c"];
            let file: serde_json::Map<String, serde_json::Value> = names
                .iter()
                .zip(&ceilings)
                .filter_map(|(n, c)| {
                    let n = n.strip_prefix("key:").unwrap_or(n);
                    c.map(|c| (n.to_owned(), serde_json::to_value(c).unwrap()))
                })
                .collect();
            let ceilings = Ceilings::parse(&serde_json::Value::Object(file).to_string()).unwrap();
            let mut fast = Limiter::new(ceilings.clone());
            let mut slow = Summing::default();
            let run_ids: [Arc<str>; 2] = [Arc::from("r0"), Arc::from("r1")];
            let (mut now, mut attempt, mut acquired) = (0i64, 0u32, Vec::<AttemptId>::new());
            for op in ops {
                match op {
                    Op::Acquire { run, task, keys, tokens, after_ms } => {
                        now += after_ms;
                        attempt += 1;
                        let run = &run_ids[usize::from(run)];
                        let asked: Vec<(String, KeyLimit)> = (0..3)
                            .filter(|b| keys & (1 << b) != 0)
                            .map(|b| (names[b].to_owned(), runs[b]))
                            .collect();
                        let tightened: Vec<(String, KeyLimit)> = asked
                            .iter()
                            .map(|(k, l)| (k.clone(), ceilings.apply(k, *l)))
                            .collect();
                        let id = (Arc::clone(run), task, attempt);
                        let got = fast.try_acquire(run, task, attempt, &asked, tokens, now);
                        let want = slow.try_acquire(id.clone(), &tightened, tokens, now);
                        proptest::prop_assert_eq!(got, want, "at {} ms", now);
                        if got {
                            acquired.push(id);
                        }
                    }
                    Op::Release { run, task } => {
                        fast.release(&run_ids[usize::from(run)], task);
                        slow.release(&run_ids[usize::from(run)], task);
                    }
                    Op::Report { nth, tokens } => {
                        if let Some(id) = acquired.get(nth % acquired.len().max(1)) {
                            fast.report_tokens(&id.0, id.1, id.2, tokens);
                            slow.report_tokens(id, tokens);
                        }
                    }
                }
                proptest::prop_assert_eq!(fast.take_wake(), slow.wake_at_ms.take());
                for key in names {
                    let slow_n = slow.in_flight.get(key).copied().unwrap_or(0);
                    proptest::prop_assert_eq!(fast.in_flight(key), slow_n);
                }
            }
            // Every window's running sum is what re-adding it gives.
            for (key, w) in &fast.windows {
                proptest::prop_assert_eq!(w.tokens, w.entries.iter().map(|d| d.tokens).sum::<u64>(), "{}", key);
            }
        }
    }
}
