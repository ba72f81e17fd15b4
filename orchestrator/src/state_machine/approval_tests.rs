//! Approval tasks and cancelling one task, at the level of the pure machine.

use super::tests::{dispatched, machine};
use super::*;
use serde_json::{json, Value};
use std::sync::Arc;

fn deadlines(out: &Output) -> Vec<(u32, i64)> {
    out.commands
        .iter()
        .filter_map(|c| match c {
            Command::Deadline { task, at_ms } => Some((*task, *at_ms)),
            _ => None,
        })
        .collect()
}

fn ok(m: &mut RunMachine, i: u32, out: &mut Output) {
    let attempt = m.task(i).attempt;
    let report = AttemptSuccess {
        output: json!("plan"),
        worker: Arc::from("w1"),
        started_at_ms: 0,
        finished_at_ms: 1,
        usage: None,
        children: vec![],
    };
    m.succeeded(i, attempt, report, out).unwrap();
}

/// plan → review (approval) → write, and `log` (all_done) after review.
fn review(timeout: Value) -> RunMachine {
    machine(json!({"tasks": [
        {"id": "plan", "handler": "echo"},
        {"id": "review", "handler": "approval", "depends_on": ["plan"],
         "input": {"prompt": "Publish?", "timeout_s": timeout, "on_timeout": "reject"}},
        {"id": "write", "handler": "echo", "depends_on": ["review"]},
        {"id": "log", "handler": "echo", "depends_on": ["review"], "trigger": "all_done"}
    ]}))
}

#[test]
fn an_approval_waits_on_no_worker_and_approving_lets_dependents_run() {
    let mut m = review(Value::Null);
    let mut out = Output::default();
    m.start(0, &mut out);
    ok(&mut m, 0, &mut out);
    out.commands.clear();
    let ok_after = 5;
    assert_eq!(m.task(1).state, TaskState::Waiting);
    assert_eq!(m.task(1).attempt, 0, "never dispatched");
    assert!(dispatched(&out).is_empty() && deadlines(&out).is_empty());

    m.approve(1, json!({"approved": true}), ok_after, &mut out)
        .unwrap();
    assert_eq!(m.task(1).state, TaskState::Succeeded);
    let mut d = dispatched(&out);
    d.sort();
    assert_eq!(d, [2, 3]);
    assert_eq!(
        m.approve(1, json!(1), 6, &mut out),
        Err(Rejected::NotWaiting(TaskState::Succeeded))
    );
    assert_eq!(
        m.reject(2, "no".into(), 6, &mut out),
        Err(Rejected::NotWaiting(TaskState::Queued))
    );
}

#[test]
fn a_rejection_fails_the_task_skips_all_success_and_runs_all_done() {
    let mut m = review(Value::Null);
    let mut out = Output::default();
    m.start(0, &mut out);
    ok(&mut m, 0, &mut out);
    out.commands.clear();
    m.reject(1, "rejected by ann".into(), 5, &mut out).unwrap();
    let t = m.task(1);
    assert_eq!(t.state, TaskState::Failed);
    assert_eq!(t.error.as_ref().unwrap().kind, "rejected");
    assert_eq!(m.task(2).state, TaskState::Skipped);
    assert_eq!(dispatched(&out), [3]);
    ok(&mut m, 3, &mut out);
    assert_eq!(m.state(), RunState::Failed);
}

#[test]
fn the_timeout_applies_once_and_survives_a_restore() {
    let mut m = review(json!(2));
    let mut out = Output::default();
    m.start(0, &mut out);
    ok(&mut m, 0, &mut out); // begins waiting at 1 ms
    assert_eq!(deadlines(&out), [(1, 2_001)]);

    // A restarted orchestrator rebuilds the machine from rows and re-arms the same deadline.
    let mut r = RunMachine::restore(
        Arc::clone(m.dag()),
        m.tasks().to_vec(),
        m.state(),
        m.seq(),
        None,
    );
    let mut out = Output::default();
    r.resume(1_000, &mut out);
    assert_eq!(deadlines(&out), [(1, 2_001)]);

    // Early: nothing happens but a new timer.
    out.commands.clear();
    r.decision_due(1, 2_000, &mut out).unwrap();
    assert_eq!(r.task(1).state, TaskState::Waiting);
    assert_eq!(deadlines(&out), [(1, 2_001)]);

    r.decision_due(1, 2_001, &mut out).unwrap();
    assert_eq!(r.task(1).state, TaskState::Failed);
    assert!(r
        .task(1)
        .error
        .as_ref()
        .unwrap()
        .message
        .contains("on_timeout"));
    // Firing again, or deciding after it, finds the task decided.
    assert_eq!(
        r.decision_due(1, 3_000, &mut out),
        Err(Rejected::NotWaiting(TaskState::Failed))
    );
    assert!(r.approve(1, json!(1), 3_000, &mut out).is_err());
}

#[test]
fn on_timeout_approve_approves() {
    let mut m = machine(json!({"tasks": [
        {"id": "review", "handler": "approval", "input": {"timeout_s": 1, "on_timeout": "approve"}},
        {"id": "write", "handler": "echo", "depends_on": ["review"]}
    ]}));
    let mut out = Output::default();
    m.start(0, &mut out);
    assert_eq!(m.task(0).state, TaskState::Waiting);
    m.decision_due(0, 1_000, &mut out).unwrap();
    assert_eq!(m.task(0).state, TaskState::Succeeded);
    assert_eq!(m.task(0).output.as_ref().unwrap()["by"], "timeout");
    assert_eq!(dispatched(&out), [1]);
}

#[test]
fn cancelling_one_running_task_skips_its_dependents_and_the_rest_goes_on() {
    let mut m = machine(json!({"tasks": [
        {"id": "slow", "handler": "sleep"},
        {"id": "after_slow", "handler": "echo", "depends_on": ["slow"]},
        {"id": "other", "handler": "echo"},
        {"id": "end", "handler": "echo", "depends_on": ["after_slow", "other"], "trigger": "all_done"}
    ]}));
    let mut out = Output::default();
    m.start(0, &mut out);
    m.started(0, 1, Arc::from("w1"), 1, &mut out).unwrap();
    out.commands.clear();
    m.cancel_task(0, 2, &mut out).unwrap();
    assert_eq!(
        out.commands,
        [Command::CancelAttempt {
            task: 0,
            attempt: 1
        }]
    );
    assert_eq!(m.task(0).state, TaskState::Cancelled);
    assert_eq!(m.task(1).state, TaskState::Skipped);
    assert_eq!(m.state(), RunState::Running);
    assert_eq!(
        m.cancel_task(0, 3, &mut out),
        Err(Rejected::AlreadyFinal(TaskState::Cancelled))
    );
    ok(&mut m, 2, &mut out);
    assert_eq!(m.task(3).state, TaskState::Queued);
    ok(&mut m, 3, &mut out);
    assert_eq!(m.state(), RunState::Failed);
}
