//! Admission's cost: tasks blocked on a shared limit are not looked at again on every
//! pass.

use super::tests::{dispatched, machine};
use super::*;
use crate::dag::{work, KeyLimit};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// Concurrency limits per key, as the engine's limiter keeps them (no rates).
#[derive(Default)]
struct Slots {
    in_flight: HashMap<String, u32>,
    held: HashMap<u32, Vec<String>>,
    refusals: usize,
}

impl Gate for Slots {
    fn try_acquire(&mut self, task: u32, _: u32, keys: &[(String, KeyLimit)], _: u64) -> bool {
        let full = keys.iter().any(|(k, l)| {
            l.max_concurrency
                .is_some_and(|m| self.in_flight.get(k).copied().unwrap_or(0) >= m)
        });
        if full {
            self.refusals += 1;
            return false;
        }
        for (k, _) in keys {
            *self.in_flight.entry(k.clone()).or_default() += 1;
        }
        self.held
            .insert(task, keys.iter().map(|(k, _)| k.clone()).collect());
        true
    }
}

impl Slots {
    fn release(&mut self, task: u32) {
        for k in self.held.remove(&task).unwrap_or_default() {
            *self.in_flight.get_mut(&k).unwrap() -= 1;
        }
    }
}

fn succeed(m: &mut RunMachine, i: u32, out: &mut Output) {
    let success = AttemptSuccess {
        output: json!(1),
        worker: Arc::from("w1"),
        started_at_ms: 0,
        finished_at_ms: 1,
        usage: None,
        children: vec![],
    };
    m.succeeded(i, m.task(i).attempt, success, out).unwrap();
}

#[test]
fn passes_cost_what_they_admit_not_how_many_wait_on_a_full_key() {
    // 10,000 tasks on key "k" (1 at a time), then 3 on key "other" (2 at a time).
    const BLOCKED: u32 = 10_000;
    const BATCHES: u32 = 1_000;
    let mut tasks: Vec<Value> = (0..BLOCKED)
        .map(|i| json!({"id": format!("k{i}"), "handler": "noop", "concurrency_key": "k"}))
        .collect();
    tasks
        .extend((0..3).map(
            |i| json!({"id": format!("o{i}"), "handler": "noop", "concurrency_key": "other"}),
        ));
    let mut m = machine(json!({
        "tasks": tasks,
        "concurrency_limits": {"k": {"max_concurrency": 1}, "other": {"max_concurrency": 2}},
    }));
    let mut gate = Slots::default();
    let mut out = Output::default();
    m.start(0, &mut out);
    m.admit(0, &mut gate, &mut out);
    // Blocked tasks of "k" do not stop "other" behind them.
    assert_eq!(dispatched(&out), vec![0, BLOCKED, BLOCKED + 1]);

    let before = work::done();
    let refusals_before = gate.refusals;
    for b in 0..BATCHES {
        let mut out = Output::default();
        succeed(&mut m, b, &mut out);
        gate.release(b);
        m.admit(0, &mut gate, &mut out);
        assert_eq!(
            dispatched(&out),
            vec![b + 1],
            "batch {b}: the next in order"
        );
    }
    let spent = work::done() - before;
    // Looking at every blocked task on each pass would cost BATCHES x BLOCKED (ten
    // million); each pass here admits one task and is refused once for "k" and once
    // for "other" (its third task waits for a slot).
    assert!(
        spent <= 4 * BATCHES as usize,
        "{BATCHES} passes cost {spent} units"
    );
    assert_eq!(gate.refusals - refusals_before, 2 * BATCHES as usize);
    assert_eq!(
        m.counts()[TaskState::Ready as usize],
        BLOCKED - BATCHES - 1 + 1
    );
}

#[test]
fn a_group_refused_once_sits_out_the_pass_but_waits_in_order_after() {
    // Two keys at 1 each; priorities interleave the groups.
    let mut m = machine(json!({
        "tasks": [
            {"id": "a0", "handler": "noop", "concurrency_key": "a", "priority": 5},
            {"id": "a1", "handler": "noop", "concurrency_key": "a", "priority": 4},
            {"id": "b0", "handler": "noop", "concurrency_key": "b", "priority": 3},
            {"id": "a2", "handler": "noop", "concurrency_key": "a", "priority": 9},
        ],
        "concurrency_limits": {"a": {"max_concurrency": 1}, "b": {"max_concurrency": 1}},
    }));
    let mut gate = Slots::default();
    let mut out = Output::default();
    m.start(0, &mut out);
    m.admit(0, &mut gate, &mut out);
    assert_eq!(dispatched(&out), vec![3, 2], "best of each group");
    assert!(m.is_waiting(0) && m.is_waiting(1) && !m.is_waiting(3));
    let mut out = Output::default();
    succeed(&mut m, 3, &mut out);
    gate.release(3);
    m.admit(0, &mut gate, &mut out);
    assert_eq!(
        dispatched(&out),
        vec![0],
        "a refused group is tried again next pass"
    );
}
