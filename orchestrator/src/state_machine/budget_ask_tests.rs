//! Budgets that ask (`"on_exceeded": "ask"`), at the level of the pure machine.

use super::tests::dispatched;
use super::*;
use crate::dag::{validate, Budget, Limits, RunSpec};
use serde_json::{json, Value};
use std::sync::Arc;

/// plan → (draft, notes): one agent at $1 per thousand tokens, 100 output tokens each,
/// so each task reserves a little over $0.1. `budget` is the run's.
fn machine(budget: Value) -> RunMachine {
    let spec: RunSpec = serde_json::from_value(json!({
        "agents": {"a": {"provider": "mock", "model": "m", "max_output_tokens": 100,
                         "price": {"input_per_mtok": 1000.0, "output_per_mtok": 1000.0}}},
        "budget": budget,
        "tasks": [
            {"id": "plan", "handler": "agent", "agent": "a"},
            {"id": "draft", "handler": "agent", "agent": "a", "depends_on": ["plan"]},
            {"id": "notes", "handler": "agent", "agent": "a", "depends_on": ["plan"]},
        ]
    }))
    .unwrap();
    RunMachine::new(Arc::new(validate(spec, &Limits::default()).unwrap()))
}

fn admit(m: &mut RunMachine) -> Output {
    let mut out = Output::default();
    m.admit(0, &mut Open, &mut out);
    out
}

fn ok(m: &mut RunMachine, i: u32, cost: f64) {
    let attempt = m.task(i).attempt;
    let report = AttemptSuccess {
        output: json!("done"),
        worker: Arc::from("w1"),
        started_at_ms: 0,
        finished_at_ms: 1,
        usage: Some(Usage {
            input_tokens: 10,
            output_tokens: 10,
            cost_usd: cost,
        }),
        children: vec![],
    };
    m.succeeded(i, attempt, report, &mut Output::default())
        .unwrap();
}

fn raise(cost: f64) -> Budget {
    Budget {
        max_cost_usd: Some(cost),
        ..Budget::default()
    }
}

/// Starts the run and lets `plan` spend $0.1: `draft` cannot be covered by $0.15.
fn waiting_on_the_run_budget() -> RunMachine {
    let mut m = machine(json!({"max_cost_usd": 0.15, "on_exceeded": "ask"}));
    m.start(0, &mut Output::default());
    assert_eq!(dispatched(&admit(&mut m)), [0]);
    ok(&mut m, 0, 0.1);
    let out = admit(&mut m);
    assert!(dispatched(&out).is_empty(), "no call before a decision");
    m
}

#[test]
fn the_first_task_a_run_budget_cannot_cover_waits_and_pauses_the_run() {
    let mut m = waiting_on_the_run_budget();
    let draft = m.task(1);
    assert_eq!(draft.state, TaskState::Waiting);
    assert_eq!(draft.attempt, 0);
    let why = draft.error.as_ref().unwrap();
    assert_eq!(
        (why.kind.as_str(), why.error_type.as_deref()),
        (AWAITING_BUDGET, Some("run"))
    );
    assert!(why.message.contains("max_cost_usd 0.15"), "{}", why.message);
    // notes might fit, but the run waits for the decision before spending more.
    assert_eq!(m.task(2).state, TaskState::Ready);
    assert!(dispatched(&admit(&mut m)).is_empty());

    // A restarted machine knows the run is paused.
    let mut r = RunMachine::restore(
        Arc::clone(m.dag()),
        m.tasks().to_vec(),
        m.state(),
        m.seq(),
        None,
    );
    assert!(dispatched(&admit(&mut r)).is_empty());

    // Bad raises change nothing.
    let mut out = Output::default();
    for bad in [raise(0.1), raise(0.15), Budget::default()] {
        let e = m.raise_budget(1, &bad, 5, &mut out).unwrap_err();
        assert!(matches!(e, Rejected::BadDecision(_)), "{bad:?}: {e:?}");
    }
    let tokens = Budget {
        max_tokens: Some(10),
        ..Budget::default()
    };
    assert!(matches!(
        m.raise_budget(1, &tokens, 5, &mut out),
        Err(Rejected::BadDecision(_))
    ));
    assert!(matches!(
        m.approve(1, json!({}), 5, &mut out),
        Err(Rejected::BadDecision(_))
    ));
    assert_eq!(m.task(1).state, TaskState::Waiting);

    // A raise stores the new budget and lets both go.
    let mut out = Output::default();
    m.raise_budget(1, &raise(5.0), 5, &mut out).unwrap();
    assert!(out.options_changed);
    assert_eq!(m.dag().options.budget.unwrap().max_cost_usd, Some(5.0));
    assert_eq!(m.task(1).state, TaskState::Ready);
    assert_eq!(m.task(1).error, None);
    assert_eq!(dispatched(&admit(&mut m)), [1, 2]);
    ok(&mut m, 1, 0.1);
    ok(&mut m, 2, 0.1);
    assert_eq!(m.state(), RunState::Succeeded);
    // A second decision is refused.
    assert!(matches!(
        m.raise_budget(1, &raise(9.0), 5, &mut out),
        Err(Rejected::RunFinished(_))
    ));
}

#[test]
fn a_raise_that_still_does_not_cover_the_task_makes_it_wait_again() {
    let mut m = waiting_on_the_run_budget();
    m.raise_budget(1, &raise(0.16), 5, &mut Output::default())
        .unwrap();
    let out = admit(&mut m);
    assert!(dispatched(&out).is_empty());
    assert_eq!(m.task(1).state, TaskState::Waiting);
    let events: Vec<TaskState> = out
        .events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Task { task: 1, state } => Some(state),
            _ => None,
        })
        .collect();
    assert_eq!(events, [TaskState::Waiting]);
}

#[test]
fn rejecting_a_run_budget_raise_ends_the_run_as_fail_would() {
    let mut m = waiting_on_the_run_budget();
    let mut out = Output::default();
    m.reject(1, "rejected by ops: too dear".into(), 5, &mut out)
        .unwrap();
    for i in [1, 2] {
        let t = m.task(i);
        assert_eq!(t.state, TaskState::Skipped);
        assert_eq!(t.error.as_ref().unwrap().kind, BUDGET_EXCEEDED);
    }
    assert!(m.exhausted().unwrap().contains("too dear"));
    assert_eq!(m.state(), RunState::Failed);
    assert!(dispatched(&out).is_empty());
}

#[test]
fn a_task_budget_that_asks_holds_only_its_task() {
    let spec: RunSpec = serde_json::from_value(json!({
        "agents": {"a": {"provider": "mock", "model": "m", "max_output_tokens": 100}},
        "tasks": [
            {"id": "big", "handler": "agent", "agent": "a",
             "budget": {"max_tokens": 50, "on_exceeded": "ask"}},
            {"id": "after", "handler": "echo", "depends_on": ["big"]},
            {"id": "other", "handler": "agent", "agent": "a"},
        ]
    }))
    .unwrap();
    let mut m = RunMachine::new(Arc::new(validate(spec, &Limits::default()).unwrap()));
    m.start(0, &mut Output::default());
    assert_eq!(dispatched(&admit(&mut m)), [2], "other goes on");
    assert_eq!(m.task(0).state, TaskState::Waiting);
    assert_eq!(
        m.task(0).error.as_ref().unwrap().error_type.as_deref(),
        Some("task")
    );

    let mut out = Output::default();
    let more = Budget {
        max_tokens: Some(5_000),
        ..Budget::default()
    };
    m.raise_budget(0, &more, 1, &mut out).unwrap();
    assert_eq!(out.respecced, [0], "the task's spec is stored again");
    assert_eq!(m.dag().task(0).budget.unwrap().max_tokens, Some(5_000));
    assert_eq!(dispatched(&admit(&mut m)), [0]);

    // Rejected, it fails like a budget that fails.
    let spec = m.dag().to_spec();
    let mut spec = spec;
    spec.tasks[0].budget = Some(Budget {
        max_tokens: Some(50),
        max_cost_usd: None,
        on_exceeded: Some(crate::dag::OnExceeded::Ask),
    });
    let mut m = RunMachine::new(Arc::new(validate(spec, &Limits::default()).unwrap()));
    m.start(0, &mut Output::default());
    admit(&mut m);
    m.reject(0, "rejected by ops".into(), 1, &mut Output::default())
        .unwrap();
    assert_eq!(m.task(0).state, TaskState::Failed);
    assert_eq!(m.task(0).error.as_ref().unwrap().kind, BUDGET_EXCEEDED);
    assert_eq!(m.task(1).state, TaskState::Skipped);
}

#[test]
fn on_exceeded_takes_fail_or_ask_only() {
    let bad = serde_json::from_value::<Budget>(json!({"max_tokens": 1, "on_exceeded": "pray"}));
    assert!(bad.unwrap_err().to_string().contains("unknown variant"));
    let fail: Budget = serde_json::from_value(json!({"on_exceeded": "fail"})).unwrap();
    assert!(!fail.asks());
}

#[test]
fn a_raise_does_not_decide_an_approval_task() {
    let spec: RunSpec = serde_json::from_value(json!({"tasks": [
        {"id": "review", "handler": "approval"},
    ]}))
    .unwrap();
    let mut m = RunMachine::new(Arc::new(validate(spec, &Limits::default()).unwrap()));
    m.start(0, &mut Output::default());
    assert_eq!(m.task(0).state, TaskState::Waiting);
    let e = m
        .raise_budget(0, &raise(5.0), 1, &mut Output::default())
        .unwrap_err();
    assert!(matches!(e, Rejected::BadDecision(_)), "{e:?}");
    assert_eq!(m.task(0).state, TaskState::Waiting);
}
