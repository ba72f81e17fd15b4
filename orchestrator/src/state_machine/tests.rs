use super::*;
use crate::dag::{validate, Limits, RunSpec};
use serde_json::{json, Value};
use std::sync::Arc;

fn machine(spec: Value) -> RunMachine {
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
    }
}

fn dispatched(out: &Output) -> Vec<u32> {
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
