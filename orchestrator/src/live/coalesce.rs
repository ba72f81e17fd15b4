//! Per-frame coalescing: within one frame, a later event supersedes an earlier one with
//! the same key (a task's state, its progress, a run's summary, a worker). Pure.
//!
//! The rule, which the tests pin:
//! - kept events stay in their original order, so each task's events stay in order;
//! - the latest event of every key is kept: a task that went queued → running →
//!   succeeded within one frame is sent once, as succeeded, with its own `seq`;
//! - pinned events (terminal states, recorded failures) are never dropped, even when a
//!   later event of the same task follows (a retried run sends a failed task back to
//!   `pending`: the client sees both);
//! - events without a key (run transitions, logs, streamed text, dead letters) are all
//!   kept.

use super::event::BusEvent;
use std::collections::HashMap;
use std::sync::Arc;

/// The events a client needs, in order, from the events of one frame interval.
pub fn coalesce(events: Vec<Arc<BusEvent>>) -> Vec<Arc<BusEvent>> {
    let keep: Vec<bool> = {
        let mut last: HashMap<(u8, &str), usize> = HashMap::with_capacity(events.len());
        for (i, e) in events.iter().enumerate() {
            if let Some(k) = e.key() {
                last.insert(k, i);
            }
        }
        if last.len() == events.len() {
            // Every event has a key of its own: nothing is superseded.
            return events;
        }
        events
            .iter()
            .enumerate()
            .map(|(i, e)| e.pinned() || e.key().is_none_or(|k| last.get(&k) == Some(&i)))
            .collect()
    };
    events
        .into_iter()
        .zip(keep)
        .filter_map(|(e, k)| k.then_some(e))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::event::testing;
    use super::*;
    use crate::api_types::LiveEvent;

    fn ev(seq: Option<u64>, event: LiveEvent) -> Arc<BusEvent> {
        Arc::new(BusEvent::new(Some("r".into()), seq, None, event))
    }

    fn task(seq: u64, id: &str, state: &str) -> Arc<BusEvent> {
        ev(Some(seq), testing::task(id, state))
    }

    fn shown(events: &[Arc<BusEvent>]) -> Vec<(Option<u64>, String)> {
        events
            .iter()
            .map(|e| {
                let what = match (&e.subject, &e.state, &e.text) {
                    (Some(s), Some(st), _) => format!("{s}:{st}"),
                    (Some(s), None, Some(t)) => format!("{s}+{t}"),
                    (s, _, _) => format!("{:?}:{}", e.kind, s.as_deref().unwrap_or("")),
                };
                (e.run_seq, what)
            })
            .collect()
    }

    #[test]
    fn a_task_that_moved_several_times_in_a_frame_is_sent_once_in_its_latest_state() {
        let out = coalesce(vec![
            task(1, "a", "queued"),
            task(2, "b", "queued"),
            task(3, "a", "running"),
            task(4, "b", "running"),
            task(5, "a", "succeeded"),
        ]);
        assert_eq!(
            shown(&out),
            [
                (Some(4), "b:running".into()),
                (Some(5), "a:succeeded".into())
            ]
        );
    }

    #[test]
    fn terminal_states_and_failures_are_never_superseded_and_order_per_task_holds() {
        let failed_attempt = ev(Some(2), testing::task_failure("a", 2, "queued"));
        let out = coalesce(vec![
            task(1, "a", "running"),
            failed_attempt,
            task(3, "a", "running"),
            task(4, "a", "failed"),
            task(5, "a", "pending"),
            task(6, "a", "queued"),
        ]);
        assert_eq!(
            shown(&out),
            [
                (Some(2), "a:queued".into()),
                (Some(4), "a:failed".into()),
                (Some(6), "a:queued".into()),
            ]
        );
    }

    #[test]
    fn text_logs_and_run_transitions_are_all_kept_and_progress_keeps_its_latest() {
        let text = |t: &str| ev(None, testing::text("a", 1, t));
        let progress = |p: f64| ev(None, testing::progress("a", 1, Some(p)));
        let out = coalesce(vec![
            text("Hel"),
            progress(0.1),
            ev(Some(1), testing::log("a", "x")),
            text("lo"),
            progress(0.2),
            ev(Some(2), testing::run("succeeded")),
        ]);
        let kinds: Vec<String> = shown(&out).into_iter().map(|(_, w)| w).collect();
        assert_eq!(kinds, ["a+Hel", "Log:a", "a+lo", "Progress:a", "Run:"]);
        assert!(out[3].json.contains("0.2"));
    }

    #[test]
    fn coalescing_keeps_the_last_state_of_every_task_across_random_histories() {
        // A deterministic pseudo-random interleaving of many tasks' lifecycles.
        let lifecycle = ["pending", "queued", "running", "succeeded"];
        let mut next = [0usize; 50];
        let mut events = Vec::new();
        let mut x: u64 = 7;
        let mut seq = 0;
        while next.iter().any(|&n| n < lifecycle.len()) {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let t = (x >> 33) as usize % next.len();
            if next[t] < lifecycle.len() {
                seq += 1;
                events.push(task(seq, &format!("t{t}"), lifecycle[next[t]]));
                next[t] += 1;
            }
        }
        let out = coalesce(events.clone());
        // One event per task, its terminal one, in the order those were published.
        let expected: Vec<_> = events.iter().filter(|e| e.is_terminal()).cloned().collect();
        assert_eq!(shown(&out), shown(&expected));
        let seqs: Vec<u64> = out.iter().filter_map(|e| e.run_seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "order is kept");
    }
}
