use super::*;
use crate::dag::{validate, Limits, RunSpec};
use serde_json::{json, Value};
use std::sync::Arc;
use worker_protocol::Usage;

/// A run machine of a DAG given as JSON (shared by the state machine's test modules).
pub(super) fn machine(spec: Value) -> RunMachine {
    let spec: RunSpec = serde_json::from_value(spec).unwrap();
    RunMachine::new(Arc::new(validate(spec, &Limits::default()).unwrap()))
}

fn w() -> Arc<str> {
    Arc::from("w1")
}

fn ok_report(output: Value, started_at_ms: i64, finished_at_ms: i64) -> AttemptSuccess {
    AttemptSuccess {
        output,
        worker: w(),
        started_at_ms,
        finished_at_ms,
        usage: None,
        children: vec![],
    }
}

/// The tasks an output dispatches, in order.
pub(super) fn dispatched(out: &Output) -> Vec<u32> {
    out.commands
        .iter()
        .filter_map(|c| match c {
            Command::Dispatch { task, .. } => Some(*task),
            _ => None,
        })
        .collect()
}

fn states(m: &RunMachine) -> Vec<&'static str> {
    m.tasks().iter().map(|t| t.state.as_str()).collect()
}

fn ok(m: &mut RunMachine, i: u32, out: &mut Output) {
    let attempt = m.task(i).attempt;
    m.succeeded(i, attempt, ok_report(json!(1), 0, 1), out)
        .unwrap();
}

fn fail(m: &mut RunMachine, i: u32, retryable: bool, out: &mut Output) {
    let attempt = m.task(i).attempt;
    let failure = AttemptFailure {
        failure: TaskFailure {
            kind: "exception".into(),
            error_type: None,
            message: "boom".into(),
            traceback: None,
        },
        retryable,
        retry_after_s: None,
        started_at_ms: Some(0),
        usage: None,
    };
    m.failed(i, attempt, failure, Some(w()), 1, out).unwrap();
}

const DIAMOND: &str = r#"{"tasks": [
    {"id": "a", "handler": "sum"},
    {"id": "b", "handler": "sum", "depends_on": ["a"]},
    {"id": "c", "handler": "sum", "depends_on": ["a"]},
    {"id": "d", "handler": "sum", "depends_on": ["b", "c"]}
]}"#;

#[test]
fn the_transition_table_allows_the_lifecycle() {
    use Stimulus as S;
    use TaskState as T;
    assert_eq!(transition(T::Pending, S::DepsMet), Ok(T::Queued));
    assert_eq!(transition(T::Pending, S::DepsMetGated), Ok(T::Ready));
    assert_eq!(transition(T::Ready, S::Dispatched), Ok(T::Queued));
    assert_eq!(transition(T::Queued, S::Started), Ok(T::Running));
    assert_eq!(transition(T::Queued, S::Succeeded), Ok(T::Succeeded));
    assert_eq!(transition(T::Running, S::FailedWillRetry), Ok(T::Ready));
    assert_eq!(transition(T::Running, S::FailedFinal), Ok(T::Failed));
    assert_eq!(transition(T::Pending, S::UpstreamFailed), Ok(T::Skipped));
    assert_eq!(transition(T::Running, S::Cancel), Ok(T::Cancelled));
    assert_eq!(transition(T::Skipped, S::Rerun), Ok(T::Pending));
}

#[test]
fn illegal_transitions_are_errors_naming_state_and_stimulus() {
    use Stimulus as S;
    use TaskState as T;
    for (from, s) in [
        (T::Pending, S::Started),
        (T::Succeeded, S::Succeeded),
        (T::Succeeded, S::Cancel),
        (T::Failed, S::Started),
        (T::Running, S::Rerun),
        (T::Ready, S::Started),
        (T::Skipped, S::DepsMet),
    ] {
        let err = transition(from, s).unwrap_err();
        assert_eq!(err, IllegalTransition { from, stimulus: s });
    }
    let msg = transition(T::Succeeded, S::Started)
        .unwrap_err()
        .to_string();
    assert_eq!(
        msg,
        "illegal transition: task in state succeeded cannot take Started"
    );
}

#[test]
fn a_diamond_releases_its_sink_only_when_both_branches_finish() {
    let mut m = machine(serde_json::from_str(DIAMOND).unwrap());
    let mut out = Output::default();
    m.start(0, &mut out);
    assert_eq!(dispatched(&out), vec![0]);
    assert_eq!(states(&m), vec!["queued", "pending", "pending", "pending"]);

    let mut out = Output::default();
    ok(&mut m, 0, &mut out);
    let mut ready = dispatched(&out);
    ready.sort();
    assert_eq!(ready, vec![1, 2]);

    let mut out = Output::default();
    ok(&mut m, 1, &mut out);
    assert!(dispatched(&out).is_empty(), "d must wait for c");
    ok(&mut m, 2, &mut out);
    assert_eq!(dispatched(&out), vec![3]);
    ok(&mut m, 3, &mut out);
    assert_eq!(m.state(), RunState::Succeeded);
}

#[test]
fn a_fan_out_dispatches_every_child_and_fans_in_once() {
    let mut tasks = vec![json!({"id": "root", "handler": "noop"})];
    for i in 0..50 {
        tasks.push(json!({"id": format!("c{i}"), "handler": "noop", "depends_on": ["root"]}));
    }
    let deps: Vec<String> = (0..50).map(|i| format!("c{i}")).collect();
    tasks.push(json!({"id": "sink", "handler": "noop", "depends_on": deps}));
    let mut m = machine(json!({ "tasks": tasks }));
    let mut out = Output::default();
    m.start(0, &mut out);
    ok(&mut m, 0, &mut out);
    assert_eq!(dispatched(&out).len(), 51);
    let mut sink_dispatches = 0;
    for i in 1..=50 {
        let mut o = Output::default();
        ok(&mut m, i, &mut o);
        sink_dispatches += dispatched(&o).iter().filter(|&&t| t == 51).count();
    }
    assert_eq!(sink_dispatches, 1);
}

#[test]
fn a_failure_with_retries_waits_in_ready_then_dispatches_a_new_attempt() {
    let mut m = machine(
        json!({"tasks": [{"id": "a", "handler": "fail", "retries": 2, "retry_backoff_s": 0.5}]}),
    );
    let mut out = Output::default();
    m.start(0, &mut out);
    let mut out = Output::default();
    fail(&mut m, 0, true, &mut out);
    assert_eq!(m.task(0).state, TaskState::Ready);
    assert_eq!(
        out.commands,
        vec![Command::ScheduleRetry {
            task: 0,
            attempt: 1,
            delay_ms: 500
        }]
    );
    let mut out = Output::default();
    m.retry_due(0, 1, 10, &mut out).unwrap();
    assert_eq!(
        out.commands,
        vec![Command::Dispatch {
            task: 0,
            attempt: 2
        }]
    );
    let mut out = Output::default();
    fail(&mut m, 0, true, &mut out);
    assert_eq!(
        out.commands,
        vec![Command::ScheduleRetry {
            task: 0,
            attempt: 2,
            delay_ms: 1000
        }]
    );
    m.retry_due(0, 2, 20, &mut out).unwrap();
    let mut out = Output::default();
    fail(&mut m, 0, true, &mut out);
    assert_eq!(m.task(0).state, TaskState::Failed, "retries exhausted");
    assert_eq!(m.state(), RunState::Failed);
}

#[test]
fn backoff_is_exponential_and_capped() {
    assert_eq!(run::backoff_for_test(1.0, 1), 1000);
    assert_eq!(run::backoff_for_test(1.0, 4), 8000);
    assert_eq!(run::backoff_for_test(1.0, 40), 3_600_000);
}

#[test]
fn a_non_retryable_failure_fails_at_once() {
    let mut m = machine(json!({"tasks": [{"id": "a", "handler": "fail", "retries": 5}]}));
    let mut out = Output::default();
    m.start(0, &mut out);
    fail(&mut m, 0, false, &mut out);
    assert_eq!(m.task(0).state, TaskState::Failed);
}

#[test]
fn a_final_failure_skips_all_success_dependents_and_runs_all_done_ones() {
    // a fails; b (all_success) and b's child c are skipped; z (all_done) runs.
    let mut m = machine(json!({"tasks": [
        {"id": "a", "handler": "fail"},
        {"id": "b", "handler": "noop", "depends_on": ["a"]},
        {"id": "c", "handler": "noop", "depends_on": ["b"]},
        {"id": "z", "handler": "noop", "depends_on": ["a"], "trigger": "all_done"}
    ]}));
    let mut out = Output::default();
    m.start(0, &mut out);
    let mut out = Output::default();
    fail(&mut m, 0, true, &mut out);
    assert_eq!(states(&m), vec!["failed", "skipped", "skipped", "queued"]);
    assert_eq!(dispatched(&out), vec![3]);
    ok(&mut m, 3, &mut out);
    assert_eq!(m.state(), RunState::Failed);
}

#[test]
fn stale_and_duplicate_results_are_rejected_without_effect() {
    let mut m = machine(
        json!({"tasks": [{"id": "a", "handler": "noop"}, {"id": "b", "handler": "noop", "depends_on": ["a"]}]}),
    );
    let mut out = Output::default();
    m.start(0, &mut out);
    ok(&mut m, 0, &mut out);
    let before = m.clone().tasks().to_vec();
    let mut out = Output::default();
    assert_eq!(
        m.succeeded(0, 1, ok_report(json!(2), 0, 1), &mut out),
        Err(Rejected::AlreadyFinal(TaskState::Succeeded))
    );
    assert_eq!(
        m.succeeded(1, 7, ok_report(json!(2), 0, 1), &mut out),
        Err(Rejected::StaleAttempt { got: 7, current: 1 })
    );
    assert!(out.commands.is_empty() && out.events.is_empty());
    assert_eq!(m.tasks(), before.as_slice());
}

#[test]
fn started_moves_queued_to_running_and_duplicates_are_harmless() {
    let mut m = machine(json!({"tasks": [{"id": "a", "handler": "noop"}]}));
    let mut out = Output::default();
    m.start(0, &mut out);
    m.started(0, 1, w(), 5, &mut out).unwrap();
    m.started(0, 1, w(), 6, &mut out).unwrap();
    assert_eq!(m.task(0).state, TaskState::Running);
    assert_eq!(m.task(0).started_at_ms, Some(5));
}

#[test]
fn cancel_stops_running_attempts_and_ends_the_run_cancelled() {
    let mut m = machine(serde_json::from_str(DIAMOND).unwrap());
    let mut out = Output::default();
    m.start(0, &mut out);
    m.started(0, 1, w(), 1, &mut out).unwrap();
    let mut out = Output::default();
    m.cancel(2, &mut out).unwrap();
    assert_eq!(
        out.commands,
        vec![Command::CancelAttempt {
            task: 0,
            attempt: 1
        }]
    );
    assert_eq!(states(&m), vec!["cancelled"; 4]);
    assert_eq!(m.state(), RunState::Cancelled);
    // A late result of the cancelled attempt changes nothing.
    assert!(m
        .succeeded(0, 1, ok_report(json!(1), 0, 3), &mut out)
        .is_err());
    assert_eq!(
        m.cancel(3, &mut out),
        Err(Rejected::RunFinished(RunState::Cancelled))
    );
}

#[test]
fn rerun_keeps_successes_and_runs_the_rest_again() {
    let mut m = machine(serde_json::from_str(DIAMOND).unwrap());
    let mut out = Output::default();
    m.start(0, &mut out);
    ok(&mut m, 0, &mut out);
    ok(&mut m, 1, &mut out);
    fail(&mut m, 2, true, &mut out);
    assert_eq!(
        states(&m),
        vec!["succeeded", "succeeded", "failed", "skipped"]
    );
    assert_eq!(m.state(), RunState::Failed);
    let mut out = Output::default();
    m.rerun(10, &mut out).unwrap();
    assert_eq!(dispatched(&out), vec![2]);
    assert_eq!(
        m.task(2).attempt,
        2,
        "attempt numbers keep rising so old results stay stale"
    );
    ok(&mut m, 2, &mut out);
    ok(&mut m, 3, &mut out);
    assert_eq!(m.state(), RunState::Succeeded);
}

#[test]
fn events_are_numbered_in_order() {
    let mut m = machine(serde_json::from_str(DIAMOND).unwrap());
    let mut out = Output::default();
    m.start(0, &mut out);
    for i in 0..4 {
        ok(&mut m, i, &mut out);
    }
    let seqs: Vec<u64> = out.events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert!(matches!(
        out.events.last().unwrap().kind,
        EventKind::Run {
            state: RunState::Succeeded
        }
    ));
}

#[test]
fn restore_resumes_tasks_whose_dependencies_finished() {
    // After a crash between storing a's success and dispatching b.
    let mut m = machine(
        json!({"tasks": [{"id": "a", "handler": "noop"}, {"id": "b", "handler": "noop", "depends_on": ["a"]}]}),
    );
    let mut out = Output::default();
    m.start(0, &mut out);
    let mut rows = m.tasks().to_vec();
    rows[0].state = TaskState::Succeeded;
    let mut restored =
        RunMachine::restore(Arc::clone(m.dag()), rows, RunState::Running, m.seq(), None);
    let mut out = Output::default();
    restored.resume(5, &mut out);
    assert_eq!(dispatched(&out), vec![1]);
}

#[test]
fn a_lost_attempt_is_requeued_without_using_a_retry_until_the_cap() {
    let mut m = machine(
        json!({"tasks": [{"id": "a", "handler": "sleep"}, {"id": "b", "handler": "noop", "depends_on": ["a"]}]}),
    );
    let mut out = Output::default();
    m.start(0, &mut out);
    m.started(0, 1, w(), 1, &mut out).unwrap();
    let mut out = Output::default();
    m.lost(0, 1, 10, &mut out).unwrap();
    assert_eq!(
        out.commands,
        vec![Command::Dispatch {
            task: 0,
            attempt: 2
        }]
    );
    assert_eq!(
        (m.task(0).state, m.task(0).failures, m.task(0).lost),
        (TaskState::Queued, 0, 1)
    );
    let lost_event = out.events.iter().find(|e| e.error.is_some()).unwrap();
    assert_eq!(lost_event.error.as_ref().unwrap().kind, "worker_lost");
    assert_eq!(lost_event.attempt, 1);
    // A report of the lost attempt arriving late is stale.
    assert_eq!(
        m.succeeded(0, 1, ok_report(json!(1), 0, 1), &mut out),
        Err(Rejected::StaleAttempt { got: 1, current: 2 })
    );
    m.lost(0, 2, 20, &mut out).unwrap();
    let mut out = Output::default();
    m.lost(0, 3, 30, &mut out).unwrap();
    assert_eq!(
        m.task(0).state,
        TaskState::Failed,
        "the third loss fails the task"
    );
    assert_eq!(m.task(1).state, TaskState::Skipped);
    assert_eq!(m.state(), RunState::Failed);
}

fn spawn_report(children: Value, usage: Option<Usage>) -> AttemptSuccess {
    AttemptSuccess {
        output: json!({"text": "plan"}),
        worker: w(),
        started_at_ms: 0,
        finished_at_ms: 1,
        usage,
        children: children.as_array().unwrap().clone(),
    }
}

fn ids(m: &RunMachine) -> Vec<String> {
    m.dag().tasks().iter().map(|t| t.id.clone()).collect()
}

#[test]
fn spawned_children_run_before_the_parents_dependents_and_feed_them() {
    // plan spawns a, b (and c after both); report depended on plan and now on them too.
    let mut m = machine(json!({"tasks": [
        {"id": "plan", "handler": "agent"},
        {"id": "report", "handler": "echo", "depends_on": ["plan"]},
    ]}));
    let mut out = Output::default();
    m.start(0, &mut out);
    let mut out = Output::default();
    let children = json!([
        {"id": "a", "handler": "sum"},
        {"id": "b", "handler": "sum"},
        {"id": "c", "handler": "sum", "depends_on": ["a", "b"]},
    ]);
    m.succeeded(
        0,
        1,
        spawn_report(
            children,
            Some(Usage {
                input_tokens: 10,
                output_tokens: 5,
                cost_usd: 0.5,
            }),
        ),
        &mut out,
    )
    .unwrap();
    assert_eq!(
        ids(&m),
        vec!["plan", "report", "plan.a", "plan.b", "plan.c"]
    );
    assert_eq!(out.new_tasks, vec![2, 3, 4]);
    let mut d = dispatched(&out);
    d.sort();
    assert_eq!(d, vec![2, 3], "root children start at once; report waits");
    assert_eq!(m.dag().task(2).parent.as_deref(), Some("plan"));
    assert_eq!(
        m.dag().parents(1),
        &[0, 2, 3, 4],
        "report waits on every child"
    );
    for i in [2, 3] {
        let mut o = Output::default();
        ok(&mut m, i, &mut o);
    }
    let mut o = Output::default();
    ok(&mut m, 4, &mut o);
    assert_eq!(
        dispatched(&o),
        vec![1],
        "report runs once all children are done"
    );
    ok(&mut m, 1, &mut o);
    assert_eq!(m.state(), RunState::Succeeded);
    assert_eq!(
        m.usage(),
        Usage {
            input_tokens: 10,
            output_tokens: 5,
            cost_usd: 0.5
        }
    );
}

#[test]
fn a_child_spec_with_a_cycle_fails_its_parent_with_a_clear_error() {
    let mut m = machine(
        json!({"tasks": [{"id": "plan", "handler": "agent"}, {"id": "after", "handler": "noop", "depends_on": ["plan"]}]}),
    );
    let mut out = Output::default();
    m.start(0, &mut out);
    let children = json!([
        {"id": "x", "handler": "noop", "depends_on": ["y"]},
        {"id": "y", "handler": "noop", "depends_on": ["x"]},
    ]);
    let mut out = Output::default();
    m.succeeded(0, 1, spawn_report(children, None), &mut out)
        .unwrap();
    let t = m.task(0);
    assert_eq!(t.state, TaskState::Failed);
    let err = t.error.as_ref().unwrap();
    assert_eq!(err.kind, "invalid_children");
    assert_eq!(
        err.message,
        r#"children of task "plan": cycle: plan.x -> plan.y -> plan.x (remove one of these dependencies)"#
    );
    assert_eq!(ids(&m), vec!["plan", "after"], "nothing was added");
    assert_eq!(m.task(1).state, TaskState::Skipped);
}

#[test]
fn usage_of_failed_attempts_counts_too() {
    let mut m = machine(json!({"tasks": [{"id": "a", "handler": "agent", "retries": 1}]}));
    let mut out = Output::default();
    m.start(0, &mut out);
    let failure = AttemptFailure {
        failure: TaskFailure {
            kind: "exception".into(),
            error_type: None,
            message: "429".into(),
            traceback: None,
        },
        retryable: true,
        retry_after_s: Some(1.0),
        started_at_ms: Some(0),
        usage: Some(Usage {
            input_tokens: 7,
            output_tokens: 0,
            cost_usd: 0.1,
        }),
    };
    let mut out = Output::default();
    m.failed(0, 1, failure, Some(w()), 1, &mut out).unwrap();
    assert_eq!(
        out.commands,
        vec![Command::ScheduleRetry {
            task: 0,
            attempt: 1,
            delay_ms: 1000
        }]
    );
    assert_eq!(m.task(0).usage.input_tokens, 7);
}

fn admit(m: &mut RunMachine, out: &mut Output) {
    m.admit(0, &mut Open, out);
}

fn report(m: &mut RunMachine, i: u32, tokens: u64, out: &mut Output) {
    let attempt = m.task(i).attempt;
    let usage = Usage {
        input_tokens: tokens,
        output_tokens: 0,
        cost_usd: 0.0,
    };
    let mut success = ok_report(json!("ok"), 0, 1);
    success.usage = Some(usage);
    m.succeeded(i, attempt, success, out).unwrap();
}

const AGENT: &str = r#"{"provider": "mock", "model": "m", "max_output_tokens": 100}"#;

fn agent_chain(n: usize, budget: Value) -> RunMachine {
    let tasks: Vec<Value> = (0..n)
        .map(|i| {
            let deps: Vec<String> = (i > 0).then(|| format!("t{}", i - 1)).into_iter().collect();
            json!({"id": format!("t{i}"), "handler": "agent", "agent": "w", "depends_on": deps})
        })
        .collect();
    let agent: Value = serde_json::from_str(AGENT).unwrap();
    machine(json!({"tasks": tasks, "agents": {"w": agent}, "budget": budget}))
}

#[test]
fn max_parallel_keeps_tasks_ready_until_a_slot_frees() {
    let tasks: Vec<Value> = (0..5)
        .map(|i| json!({"id": format!("t{i}"), "handler": "noop"}))
        .collect();
    let mut m = machine(json!({"tasks": tasks, "max_parallel": 2}));
    let mut out = Output::default();
    m.start(0, &mut out);
    assert!(dispatched(&out).is_empty(), "admission decides, not start");
    assert_eq!(m.counts()[TaskState::Ready as usize], 5);
    admit(&mut m, &mut out);
    assert_eq!(dispatched(&out), vec![0, 1]);
    assert!(m.is_waiting(2) && !m.is_waiting(0));
    admit(&mut m, &mut out);
    assert_eq!(dispatched(&out), vec![0, 1], "no slot, no dispatch");
    let mut out = Output::default();
    ok(&mut m, 0, &mut out);
    admit(&mut m, &mut out);
    assert_eq!(dispatched(&out), vec![2]);
}

#[test]
fn a_run_budget_stops_dispatching_at_the_task_that_would_exceed_it() {
    // Each task reserves ~104 tokens (prompt + 100 output) and reports 300.
    let mut m = agent_chain(5, json!({"max_tokens": 1000}));
    let mut out = Output::default();
    m.start(0, &mut out);
    for i in 0..3 {
        admit(&mut m, &mut out);
        assert_eq!(m.task(i).state, TaskState::Queued, "t{i} fits the budget");
        report(&mut m, i, 300, &mut out);
    }
    // 900 spent: t3's ~106 more would exceed 1000.
    admit(&mut m, &mut out);
    assert_eq!(
        states(&m),
        vec!["succeeded", "succeeded", "succeeded", "skipped", "skipped"]
    );
    assert_eq!(m.state(), RunState::Failed);
    let why = m.exhausted().unwrap();
    assert!(
        why.starts_with("budget exceeded: the run's max_tokens 1000: 900 used")
            && why.contains("\"t3\""),
        "{why}"
    );
    assert_eq!(m.task(3).error.as_ref().unwrap().kind, BUDGET_EXCEEDED);
    assert_eq!(m.task(4).error.as_ref().unwrap().kind, BUDGET_EXCEEDED);

    assert_eq!(m.usage().input_tokens, 900);
}

#[test]
fn reservations_in_flight_make_tasks_wait_not_fail() {
    let agent: Value = serde_json::from_str(AGENT).unwrap();
    let mut m = machine(json!({
        "tasks": [
            {"id": "a", "handler": "agent", "agent": "w"},
            {"id": "b", "handler": "agent", "agent": "w"},
        ],
        "agents": {"w": agent},
        "budget": {"max_tokens": 150},
    }));
    let mut out = Output::default();
    m.start(0, &mut out);
    admit(&mut m, &mut out);
    assert_eq!(dispatched(&out), vec![0], "b would overrun a's reservation");
    assert!(m.exhausted().is_none());
    report(&mut m, 0, 20, &mut out);
    admit(&mut m, &mut out);
    assert_eq!(dispatched(&out), vec![0, 1], "a spent 20: b fits");
}

#[test]
fn a_task_its_own_budget_cannot_cover_fails_without_running() {
    let agent: Value = serde_json::from_str(AGENT).unwrap();
    let mut m = machine(json!({
        "tasks": [
            {"id": "a", "handler": "agent", "agent": "w", "budget": {"max_tokens": 50}},
            {"id": "b", "handler": "noop", "depends_on": ["a"]},
        ],
        "agents": {"w": agent},
    }));
    let mut out = Output::default();
    m.start(0, &mut out);
    admit(&mut m, &mut out);
    assert!(dispatched(&out).is_empty());
    assert_eq!(states(&m), vec!["failed", "skipped"]);
    let err = m.task(0).error.as_ref().unwrap();
    assert_eq!(err.kind, BUDGET_EXCEEDED);
    assert!(
        err.message.contains("the task's max_tokens 50"),
        "{}",
        err.message
    );
}

#[test]
fn a_spawned_child_may_depend_only_on_its_siblings() {
    let mut m = machine(json!({"tasks": [
        {"id": "other", "handler": "noop"},
        {"id": "plan", "handler": "agent"},
    ]}));
    let mut out = Output::default();
    m.start(0, &mut out);
    let children = json!([{"id": "x", "handler": "noop", "depends_on": ["other"]}]);
    m.succeeded(1, 1, spawn_report(children, None), &mut out)
        .unwrap();
    let err = m.task(1).error.as_ref().unwrap();
    assert_eq!(err.kind, "invalid_children");
    assert!(err.message.contains("\"other\""), "{}", err.message);
}

#[test]
fn a_restored_gated_run_waits_for_admission_again() {
    let mut m = agent_chain(2, json!({"max_tokens": 10000}));
    let mut out = Output::default();
    m.start(0, &mut out);
    assert_eq!(m.task(0).state, TaskState::Ready);
    let restored = RunMachine::restore(
        Arc::clone(m.dag()),
        m.tasks().to_vec(),
        m.state(),
        m.seq(),
        None,
    );
    let mut m = restored;
    assert!(m.has_waiting());
    let mut out = Output::default();
    admit(&mut m, &mut out);
    assert_eq!(dispatched(&out), vec![0]);
}

#[test]
fn a_retry_in_a_gated_run_waits_for_admission_and_says_so() {
    let mut m = machine(
        json!({"max_parallel": 1, "tasks": [{"id": "a", "handler": "noop", "retries": 1}]}),
    );
    let mut out = Output::default();
    m.start(0, &mut out);
    admit(&mut m, &mut out);
    fail(&mut m, 0, true, &mut out);
    let mut out = Output::default();
    m.retry_due(0, 1, 5, &mut out).unwrap();
    assert!(dispatched(&out).is_empty());
    assert!(m.is_waiting(0) && out.dirty.contains(&0));
    admit(&mut m, &mut out);
    assert_eq!(dispatched(&out), vec![0]);
    assert_eq!(m.task(0).attempt, 2);
}

/// Tokens in and out, as budgets count them.
fn toks(u: &Usage) -> u64 {
    u.input_tokens + u.output_tokens
}

fn tokens_in(input: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: 0,
        cost_usd: 0.0,
    }
}

fn ending(kind: &str, usage: Option<Usage>) -> AttemptFailure {
    AttemptFailure {
        failure: TaskFailure {
            kind: kind.into(),
            error_type: None,
            message: kind.into(),
            traceback: None,
        },
        retryable: false,
        retry_after_s: None,
        started_at_ms: Some(0),
        usage,
    }
}

/// Independent agent tasks `a`, `b`, … (each reserving 101 tokens) under a roomy run
/// budget, all dispatched and started on worker `w1`.
fn started_agents(n: usize) -> RunMachine {
    let agent: Value = serde_json::from_str(AGENT).unwrap();
    let tasks: Vec<Value> = (0..n)
        .map(|i| json!({"id": format!("{}", (b'a' + i as u8) as char), "handler": "agent", "agent": "w"}))
        .collect();
    let mut m =
        machine(json!({"tasks": tasks, "agents": {"w": agent}, "budget": {"max_tokens": 100_000}}));
    let mut out = Output::default();
    m.start(0, &mut out);
    admit(&mut m, &mut out);
    for i in 0..n as u32 {
        m.started(i, 1, w(), 1, &mut out).unwrap();
    }
    m
}

const RESERVED: u64 = 101;

#[test]
fn usage_in_progress_counts_at_once_and_the_result_supersedes_it() {
    let mut m = started_agents(1);
    let mut out = Output::default();
    m.report_usage(0, 1, "w1", &tokens_in(60), &mut out)
        .unwrap();
    assert_eq!(toks(&m.task(0).usage), 60);
    assert_eq!(toks(&m.usage()), 60);
    assert!(
        out.dirty.contains(&0) && out.run_changed,
        "the rows are written"
    );
    let mut out = Output::default();
    m.report_usage(0, 1, "w1", &tokens_in(60), &mut out)
        .unwrap();
    assert!(out.dirty.is_empty(), "a repeated figure changes nothing");
    report(&mut m, 0, 80, &mut out);
    assert_eq!(toks(&m.task(0).usage), 80, "the result's figure, not 140");
    assert_eq!(toks(&m.usage()), 80);
}

#[test]
fn a_running_attempts_usage_counts_only_from_its_worker_and_dispatched_attempts() {
    let mut m = started_agents(1);
    let mut out = Output::default();
    assert_eq!(
        m.report_usage(0, 1, "intruder", &tokens_in(9_999), &mut out),
        Err(Rejected::OtherWorker)
    );
    assert_eq!(
        m.report_usage(0, 2, "w1", &tokens_in(9_999), &mut out),
        Err(Rejected::UnknownAttempt { got: 2, current: 1 })
    );
    assert_eq!(m.usage(), Usage::default());
}

#[test]
fn a_stale_or_duplicate_results_usage_counts_once() {
    let mut m = started_agents(1);
    let mut out = Output::default();
    m.lost(0, 1, 10, &mut out).unwrap();
    assert_eq!(
        toks(&m.usage()),
        RESERVED,
        "the lost attempt keeps its reservation"
    );
    // The lost attempt's worker was only slow: its result is stale, its usage is not.
    let mut late = ok_report(json!(1), 0, 11);
    late.usage = Some(tokens_in(30));
    for _ in 0..2 {
        assert_eq!(
            m.succeeded(0, 1, late.clone(), &mut out),
            Err(Rejected::StaleAttempt { got: 1, current: 2 })
        );
        assert_eq!(toks(&m.usage()), 30, "its report replaces the reservation");
    }
    report(&mut m, 0, 50, &mut out);
    let mut again = ok_report(json!(1), 0, 12);
    again.usage = Some(tokens_in(50));
    assert_eq!(
        m.succeeded(0, 2, again, &mut out),
        Err(Rejected::AlreadyFinal(TaskState::Succeeded))
    );
    assert_eq!(toks(&m.task(0).usage), 80);
    assert_eq!(toks(&m.usage()), 80);
}

#[test]
fn attempts_cut_off_without_a_report_are_charged_their_reservation() {
    let mut m = started_agents(5);
    let mut out = Output::default();
    // a: timed out with nothing reported; b: timed out after billing 40 (the worker's
    // account); c: idle-timed-out by the engine after a progress report of 25.
    m.failed(0, 1, ending("timeout", None), Some(w()), 5, &mut out)
        .unwrap();
    m.failed(
        1,
        1,
        ending("timeout", Some(tokens_in(40))),
        Some(w()),
        5,
        &mut out,
    )
    .unwrap();
    m.report_usage(2, 1, "w1", &tokens_in(25), &mut out)
        .unwrap();
    m.failed(2, 1, ending("idle_timeout", None), None, 5, &mut out)
        .unwrap();
    // d: an ordinary failure is the worker's account: no usage, no charge.
    m.failed(3, 1, ending("exception", None), Some(w()), 5, &mut out)
        .unwrap();
    let used: Vec<u64> = m.tasks().iter().map(|t| toks(&t.usage)).collect();
    assert_eq!(used, [RESERVED, 40, 25, 0, 0]);
    // e: lost three times, each attempt charged its reservation.
    for attempt in 1..=3 {
        m.lost(4, attempt, 10, &mut out).unwrap();
    }
    assert_eq!(m.task(4).state, TaskState::Failed);
    assert_eq!(toks(&m.task(4).usage), 3 * RESERVED);
    assert_eq!(toks(&m.usage()), 4 * RESERVED + 65);
    assert_eq!(m.committed(), m.usage(), "nothing is left reserved");
}

#[test]
fn cancelling_charges_running_attempts_their_reservation_but_not_queued_ones() {
    let agent: Value = serde_json::from_str(AGENT).unwrap();
    let mut m = machine(json!({
        "tasks": [{"id": "a", "handler": "agent", "agent": "w"}, {"id": "b", "handler": "agent", "agent": "w"}],
        "agents": {"w": agent}, "budget": {"max_tokens": 100_000},
    }));
    let mut out = Output::default();
    m.start(0, &mut out);
    admit(&mut m, &mut out);
    m.started(0, 1, w(), 1, &mut out).unwrap();
    m.cancel(2, &mut out).unwrap();
    assert_eq!(toks(&m.task(0).usage), RESERVED);
    assert_eq!(m.task(1).usage, Usage::default(), "no worker took it");
    // The cancelled attempt's own account arrives later and replaces the reservation.
    let mut late = ending("cancelled", Some(tokens_in(12)));
    late.retryable = false;
    assert!(m.failed(0, 1, late, Some(w()), 3, &mut out).is_err());
    assert_eq!(toks(&m.usage()), 12);
}

#[test]
fn usage_reported_in_flight_is_not_counted_twice_with_the_reservation() {
    // `c` (102 tokens: b's output is its prompt too) is admitted only if a's reported 40
    // tokens come out of a's reservation of 101 rather than on top of it:
    // 40 + 61 + 102 = 203.
    let agent: Value = serde_json::from_str(AGENT).unwrap();
    let mut m = machine(json!({
        "tasks": [
            {"id": "a", "handler": "agent", "agent": "w"},
            {"id": "b", "handler": "noop"},
            {"id": "c", "handler": "agent", "agent": "w", "depends_on": ["b"]},
        ],
        "agents": {"w": agent}, "budget": {"max_tokens": 2 * RESERVED + 1},
    }));
    let mut out = Output::default();
    m.start(0, &mut out);
    admit(&mut m, &mut out);
    m.started(0, 1, w(), 1, &mut out).unwrap();
    m.report_usage(0, 1, "w1", &tokens_in(40), &mut out)
        .unwrap();
    ok(&mut m, 1, &mut out);
    let mut out = Output::default();
    admit(&mut m, &mut out);
    assert_eq!(dispatched(&out), vec![2]);
}

#[test]
fn charges_survive_a_restore_so_a_report_seen_again_counts_once() {
    let mut m = started_agents(2);
    let mut out = Output::default();
    m.report_usage(0, 1, "w1", &tokens_in(60), &mut out)
        .unwrap();
    report(&mut m, 1, 70, &mut out);
    let mut m = RunMachine::restore(
        Arc::clone(m.dag()),
        m.tasks().to_vec(),
        m.state(),
        m.seq(),
        None,
    );
    assert_eq!(toks(&m.usage()), 130);
    // a's result restates its 60; b's result is delivered again.
    report(&mut m, 0, 60, &mut out);
    let mut again = ok_report(json!(1), 0, 12);
    again.usage = Some(tokens_in(70));
    assert!(m.succeeded(1, 1, again, &mut out).is_err());
    assert_eq!(toks(&m.usage()), 130);
}
