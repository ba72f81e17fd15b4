//! Dispatch in slices: an output with bounded room resolves that many tasks and
//! defers the rest, which later outputs release; no task is lost or sent twice,
//! whether the run is cancelled, restored or re-run in between.

use super::tests::dispatched;
use super::*;
use crate::dag::{validate, Limits, RunSpec};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::Arc;

const WIDTH: u32 = 2_500;
const ROOM: usize = 1_000;

fn wide(extra: Value) -> RunMachine {
    let mut tasks: Vec<Value> = (0..WIDTH)
        .map(|i| json!({"id": format!("t{i}"), "handler": "noop"}))
        .collect();
    tasks.push(extra);
    let spec: RunSpec = serde_json::from_value(json!({ "tasks": tasks })).unwrap();
    RunMachine::new(Arc::new(validate(spec, &Limits::default()).unwrap()))
}

fn bounded() -> Output {
    Output {
        room: Some(ROOM),
        ..Output::default()
    }
}

/// Releases slices until none is deferred; every dispatch goes into `seen` once.
fn drain(m: &mut RunMachine, seen: &mut HashSet<u32>) -> usize {
    let mut slices = 0;
    while m.has_deferred() {
        let mut out = bounded();
        m.release_deferred(0, &mut out);
        let d = dispatched(&out);
        assert!(d.len() <= ROOM, "a slice of {}", d.len());
        for i in d {
            assert!(seen.insert(i), "task {i} dispatched twice");
        }
        slices += 1;
    }
    slices
}

#[test]
fn a_wide_start_is_dispatched_in_slices_of_the_room() {
    let mut m = wide(json!({"id": "join", "handler": "noop", "depends_on": ["t0"]}));
    let mut out = bounded();
    m.start(0, &mut out);
    assert_eq!(dispatched(&out).len(), ROOM);
    // One task event per dispatch and the run's own: the burst is bounded too.
    assert_eq!(out.events.len(), ROOM + 1);
    assert!(m.has_deferred());
    assert_eq!(
        m.counts()[TaskState::Pending as usize],
        WIDTH + 1 - ROOM as u32,
        "the rest wait in pending, as stored"
    );
    let mut seen: HashSet<u32> = dispatched(&out).into_iter().collect();
    assert_eq!(drain(&mut m, &mut seen), 2);
    assert_eq!(seen.len(), WIDTH as usize);
    assert!(!seen.contains(&WIDTH), "join waits for t0");

    // Without a bound (the state machine's own tests, reuse), nothing is deferred.
    let mut m = wide(json!({"id": "x", "handler": "noop"}));
    let mut out = Output::default();
    m.start(0, &mut out);
    assert_eq!(dispatched(&out).len(), WIDTH as usize + 1);
    assert!(!m.has_deferred());
}

#[test]
fn a_restore_mid_slices_dispatches_each_remaining_task_once() {
    let mut m = wide(json!({"id": "x", "handler": "noop"}));
    let mut out = bounded();
    m.start(0, &mut out);
    let first: HashSet<u32> = dispatched(&out).into_iter().collect();
    // The process dies here: the stored rows are the first slice queued, the rest
    // pending. A restart rebuilds the run from them and resumes.
    let rows = m.tasks().to_vec();
    let mut r = RunMachine::restore(Arc::clone(m.dag()), rows, RunState::Running, m.seq(), None);
    let mut out = bounded();
    r.resume(0, &mut out);
    let mut seen = first.clone();
    for i in dispatched(&out) {
        assert!(
            seen.insert(i),
            "task {i} dispatched again after the restore"
        );
    }
    drain(&mut r, &mut seen);
    assert_eq!(seen.len(), WIDTH as usize + 1);
    assert_eq!(r.counts()[TaskState::Pending as usize], 0);
    assert_eq!(r.counts()[TaskState::Queued as usize], WIDTH + 1);
}

#[test]
fn a_cancel_or_rerun_mid_slices_leaves_no_stale_dispatch() {
    let mut m = wide(json!({"id": "x", "handler": "noop"}));
    let mut out = bounded();
    m.start(0, &mut out);
    let mut out = Output::default();
    m.cancel(0, &mut out).unwrap();
    assert!(
        !m.has_deferred(),
        "cancelled tasks are not deferred any more"
    );
    let mut out = bounded();
    m.release_deferred(0, &mut out);
    assert!(dispatched(&out).is_empty());

    let mut out = bounded();
    m.rerun(0, &mut out).unwrap();
    let mut seen: HashSet<u32> = dispatched(&out).into_iter().collect();
    assert_eq!(seen.len(), ROOM, "the re-run is sliced too");
    drain(&mut m, &mut seen);
    assert_eq!(seen.len(), WIDTH as usize + 1);
}
