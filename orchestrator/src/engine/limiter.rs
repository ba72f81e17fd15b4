//! Limits shared by every run: attempts in flight per key (an agent's
//! `max_concurrency`, a `concurrency_key`'s), and requests and tokens per rolling
//! minute per key. Pure bookkeeping; the core asks it before dispatching a gated task
//! and tells it when attempts end.

use crate::dag::KeyLimit;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// The rolling window of `rpm` and `tpm`.
const WINDOW_MS: i64 = 60_000;

/// One dispatch inside a key's window.
#[derive(Debug, Clone)]
struct Dispatch {
    at_ms: i64,
    run: Arc<str>,
    task: u32,
    attempt: u32,
    /// Estimated at dispatch; what the attempt reported once it ends.
    tokens: u64,
}

/// Slots and windows of every key.
#[derive(Debug, Default)]
pub struct Limiter {
    in_flight: HashMap<String, u32>,
    windows: HashMap<String, VecDeque<Dispatch>>,
    /// The keys each attempt in flight holds, by (run, task).
    held: HashMap<(Arc<str>, u32), Vec<String>>,
    /// When a rate-limited key next frees up, so the core knows when to try again.
    wake_at_ms: Option<i64>,
}

impl Limiter {
    /// Takes a slot of every key for `attempt` of `task` in `run` if all allow it at
    /// `now_ms`; otherwise takes nothing.
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
            if let Some(max) = limit.max_concurrency {
                if self.in_flight.get(key).copied().unwrap_or(0) >= max {
                    return false;
                }
            }
            if limit.rpm.is_none() && limit.tpm.is_none() {
                continue;
            }
            let window = self.windows.entry(key.clone()).or_default();
            while window
                .front()
                .is_some_and(|d| d.at_ms <= now_ms - WINDOW_MS)
            {
                window.pop_front();
            }
            let frees_at = window.front().map(|d| d.at_ms + WINDOW_MS);
            let over_rpm = limit.rpm.is_some_and(|r| window.len() >= r as usize);
            // An empty window admits anything: one task bigger than the whole minute's
            // allowance must still run eventually.
            let used: u64 = window.iter().map(|d| d.tokens).sum();
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
                self.windows
                    .entry(key.clone())
                    .or_default()
                    .push_back(Dispatch {
                        at_ms: now_ms,
                        run: Arc::clone(run),
                        task,
                        attempt,
                        tokens,
                    });
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

    /// The attempt of `task` in `run` ended: its slots free up.
    pub fn release(&mut self, run: &Arc<str>, task: u32) {
        let Some(held) = self.held.remove(&(Arc::clone(run), task)) else {
            return;
        };
        for key in &held {
            if let Some(n) = self.in_flight.get_mut(key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.in_flight.remove(key);
                }
            }
        }
    }

    /// `attempt` of `task` in `run` reported using `tokens`: its place in the token
    /// windows counts that instead of the estimate.
    pub fn report_tokens(&mut self, run: &Arc<str>, task: u32, attempt: u32, tokens: u64) {
        for window in self.windows.values_mut() {
            for d in window.iter_mut() {
                if d.task == task && d.attempt == attempt && d.run == *run {
                    d.tokens = tokens;
                }
            }
        }
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

    /// When a rate limit that turned a task away frees up; cleared by reading it.
    pub fn take_wake(&mut self) -> Option<i64> {
        self.wake_at_ms.take()
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
}
