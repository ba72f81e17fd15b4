use super::*;
use serde_json::json;

fn spec(v: serde_json::Value) -> RunSpec {
    serde_json::from_value(v).expect("spec parses")
}

fn problems(v: serde_json::Value) -> Vec<Problem> {
    validate(spec(v), &Limits::default())
        .expect_err("should be invalid")
        .0
}

fn only(v: serde_json::Value) -> Problem {
    let mut p = problems(v);
    assert_eq!(p.len(), 1, "expected one problem, got {p:?}");
    p.remove(0)
}

#[test]
fn a_diamond_seals_with_its_adjacency() {
    //   a
    //  / \
    // b   c
    //  \ /
    //   d
    let dag = validate(
        spec(json!({"tasks": [
            {"id": "a", "handler": "sum"},
            {"id": "b", "handler": "sum", "depends_on": ["a"]},
            {"id": "c", "handler": "sum", "depends_on": ["a"]},
            {"id": "d", "handler": "sum", "depends_on": ["b", "c"]},
        ]})),
        &Limits::default(),
    )
    .unwrap();
    let d = dag.index_of("d").unwrap();
    assert_eq!(dag.parents(d), &[1, 2]);
    assert_eq!(dag.children(0), &[1, 2]);
    assert_eq!(dag.queue_of(d), "default");
}

#[test]
fn an_empty_run_is_rejected() {
    let p = only(json!({"tasks": []}));
    assert_eq!(p.code, ProblemCode::EmptyRun);
    assert_eq!(p.message, "the run has no tasks");
}

#[test]
fn duplicate_ids_are_named_once_with_their_count() {
    let p = only(json!({"tasks": [
        {"id": "a", "handler": "noop"}, {"id": "a", "handler": "noop"}, {"id": "a", "handler": "noop"}
    ]}));
    assert_eq!(p.code, ProblemCode::DuplicateId);
    assert_eq!(p.message, r#"task id "a" is used by 3 tasks"#);
}

#[test]
fn malformed_ids_are_rejected() {
    let p = only(json!({"tasks": [{"id": "has space", "handler": "noop"}]}));
    assert_eq!(p.code, ProblemCode::InvalidId);
    assert_eq!(
        p.message,
        r#"task id "has space" is not valid: use 1 to 128 letters, digits or _ - . :"#
    );
    let long = "x".repeat(129);
    assert_eq!(
        only(json!({"tasks": [{"id": long, "handler": "noop"}]})).code,
        ProblemCode::InvalidId
    );
}

#[test]
fn unknown_dependencies_name_both_tasks() {
    let p = only(json!({"tasks": [{"id": "b", "handler": "noop", "depends_on": ["zz"]}]}));
    assert_eq!(p.code, ProblemCode::UnknownDependency);
    assert_eq!(
        p.message,
        r#"task "b" depends on "zz", which is not a task in this run"#
    );
    assert_eq!(p.tasks, vec!["b", "zz"]);
}

#[test]
fn self_and_duplicate_dependencies_are_rejected() {
    let p = only(json!({"tasks": [{"id": "a", "handler": "noop", "depends_on": ["a"]}]}));
    assert_eq!(p.code, ProblemCode::SelfDependency);
    assert_eq!(p.message, r#"task "a" depends on itself"#);
    let p = only(json!({"tasks": [
        {"id": "a", "handler": "noop"}, {"id": "b", "handler": "noop", "depends_on": ["a", "a"]}
    ]}));
    assert_eq!(p.code, ProblemCode::DuplicateDependency);
}

#[test]
fn a_cycle_names_its_members_in_order() {
    // a -> b -> c -> a, and d hangs off the cycle without being part of it.
    let p = only(json!({"tasks": [
        {"id": "a", "handler": "noop", "depends_on": ["c"]},
        {"id": "b", "handler": "noop", "depends_on": ["a"]},
        {"id": "c", "handler": "noop", "depends_on": ["b"]},
        {"id": "d", "handler": "noop", "depends_on": ["c"]},
    ]}));
    assert_eq!(p.code, ProblemCode::Cycle);
    assert_eq!(
        p.message,
        "cycle: a -> b -> c -> a (remove one of these dependencies)"
    );
    assert_eq!(p.tasks, vec!["a", "b", "c"]);
}

#[test]
fn two_separate_cycles_are_both_reported() {
    let p = problems(json!({"tasks": [
        {"id": "a", "handler": "noop", "depends_on": ["b"]},
        {"id": "b", "handler": "noop", "depends_on": ["a"]},
        {"id": "x", "handler": "noop", "depends_on": ["y"]},
        {"id": "y", "handler": "noop", "depends_on": ["x"]},
    ]}));
    assert_eq!(p.len(), 2);
    assert!(p.iter().all(|p| p.code == ProblemCode::Cycle));
    assert_eq!(p[1].tasks, vec!["x", "y"]);
}

#[test]
fn size_limits_are_enforced() {
    let limits = Limits {
        max_tasks: 2,
        max_dependencies: 1,
        max_input_bytes: 10,
        max_json_depth: 2,
        ..Limits::default()
    };
    let errs = validate(
        spec(json!({"tasks": [
            {"id": "a", "handler": "noop", "input": "a long string over ten bytes"},
            {"id": "b", "handler": "noop", "input": [[[1]]]},
            {"id": "c", "handler": "noop", "depends_on": ["a", "b"]},
        ]})),
        &limits,
    )
    .unwrap_err()
    .0;
    let codes: Vec<_> = errs.iter().map(|p| p.code).collect();
    assert_eq!(
        codes,
        vec![
            ProblemCode::TooManyTasks,
            ProblemCode::InputTooLarge,
            ProblemCode::InputTooDeep,
            ProblemCode::TooManyDependencies
        ]
    );
    assert_eq!(
        errs[0].message,
        "the run has 3 tasks; at most 2 are allowed"
    );
    assert_eq!(
        errs[1].message,
        r#"task "a" has an input of 30 bytes; at most 10 are allowed"#
    );
    assert_eq!(
        errs[2].message,
        r#"task "b" has an input nested 3 levels deep; at most 2 are allowed"#
    );
    assert_eq!(
        errs[3].message,
        r#"task "c" has 2 dependencies; at most 1 are allowed"#
    );
}

#[test]
fn bad_numbers_are_rejected() {
    let errs = problems(json!({"tasks": [
        {"id": "a", "handler": "noop", "timeout_s": 0, "retry_backoff_s": -1, "retries": 1000},
    ]}));
    let codes: Vec<_> = errs.iter().map(|p| p.code).collect();
    assert_eq!(
        codes,
        vec![
            ProblemCode::InvalidRetries,
            ProblemCode::InvalidTimeout,
            ProblemCode::InvalidBackoff
        ]
    );
    assert_eq!(
        errs[1].message,
        r#"task "a" has timeout_s 0; it must be a positive number of seconds"#
    );
}

#[test]
fn bad_handler_and_queue_names_are_rejected() {
    let errs = problems(json!({"queue": "", "tasks": [
        {"id": "a", "handler": "rm -rf /", "queue": "q 1"},
    ]}));
    let codes: Vec<_> = errs.iter().map(|p| p.code).collect();
    assert_eq!(
        codes,
        vec![
            ProblemCode::InvalidQueue,
            ProblemCode::InvalidHandler,
            ProblemCode::InvalidQueue
        ]
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let errs = problems(json!({"tasks": [
        {"id": "a", "handler": "noop"}, {"id": "a", "handler": "noop"},
        {"id": "b", "handler": "noop", "depends_on": ["nope"]},
    ]}));
    assert_eq!(errs.len(), 2);
}

#[test]
fn unknown_fields_are_rejected_when_parsing() {
    let err = serde_json::from_value::<RunSpec>(
        json!({"tasks": [{"id": "a", "handler": "noop", "colour": 1}]}),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("unknown field `colour`"), "{err}");
}

mod properties {
    use super::*;
    use crate::state_machine::{
        AttemptFailure, AttemptSuccess, Command, Output, RunMachine, RunState, TaskFailure,
        TaskState,
    };
    use proptest::prelude::*;
    use std::sync::Arc;

    /// A random DAG: task i depends on a random subset of tasks before it.
    fn dag_spec() -> impl Strategy<Value = (RunSpec, Vec<bool>)> {
        (1usize..40).prop_flat_map(|n| {
            let deps = prop::collection::vec(prop::collection::vec(any::<prop::sample::Index>(), 0..4), n);
            let triggers = prop::collection::vec(any::<bool>(), n);
            let fails = prop::collection::vec(prop::bool::weighted(0.2), n);
            (deps, triggers, fails).prop_map(move |(deps, triggers, fails)| {
                let tasks: Vec<serde_json::Value> = (0..n)
                    .map(|i| {
                        let mut d: Vec<String> = if i == 0 { vec![] } else { deps[i].iter().map(|x| format!("t{}", x.index(i))).collect() };
                        d.sort();
                        d.dedup();
                        let trigger = if triggers[i] { "all_done" } else { "all_success" };
                        json!({"id": format!("t{i}"), "handler": "noop", "depends_on": d, "trigger": trigger})
                    })
                    .collect();
                (serde_json::from_value(json!({"tasks": tasks})).unwrap(), fails)
            })
        })
    }

    proptest! {
        #[test]
        fn arbitrary_json_never_panics_the_parser_or_validator(body in any::<Vec<u8>>()) {
            if let Ok(spec) = serde_json::from_slice::<RunSpec>(&body) {
                let _ = validate(spec, &Limits::default());
            }
        }

        #[test]
        fn an_acyclic_dag_always_runs_to_an_end_that_respects_its_triggers((spec, fails) in dag_spec()) {
            let dag = Arc::new(validate(spec, &Limits::default()).expect("acyclic by construction"));
            let mut m = RunMachine::new(Arc::clone(&dag));
            let mut out = Output::default();
            m.start(0, &mut out);
            let mut dispatched = std::collections::HashSet::new();
            while let Some(cmd) = out.commands.pop() {
                let Command::Dispatch { task, attempt } = cmd else { continue };
                prop_assert!(dispatched.insert(task), "task {} dispatched twice", task);
                if fails[task as usize] {
                    let failure = AttemptFailure {
                        failure: TaskFailure { kind: "exception".into(), error_type: None, message: "x".into(), traceback: None },
                        retryable: false,
                        retry_after_s: None,
                        started_at_ms: None,
        usage: None,
                    };
                    m.failed(task, attempt, failure, None, 1, &mut out).unwrap();
                } else {
                    let ok = AttemptSuccess { output: json!(1), worker: Arc::from("w"), started_at_ms: 0, finished_at_ms: 1, usage: None, children: vec![] };
                    m.succeeded(task, attempt, ok, &mut out).unwrap();
                }
            }
            prop_assert!(m.state().is_terminal());
            for i in 0..dag.len() as u32 {
                let t = m.task(i);
                prop_assert!(t.state.is_terminal());
                let parents_ok = dag.parents(i).iter().all(|&p| m.task(p).state == TaskState::Succeeded);
                match t.state {
                    TaskState::Skipped => prop_assert!(!parents_ok && dag.task(i).trigger == Trigger::AllSuccess),
                    TaskState::Succeeded | TaskState::Failed => prop_assert!(parents_ok || dag.task(i).trigger == Trigger::AllDone),
                    other => prop_assert!(false, "unexpected final state {}", other),
                }
            }
            let all_ok = m.tasks().iter().all(|t| t.state == TaskState::Succeeded);
            prop_assert_eq!(m.state() == RunState::Succeeded, all_ok);
        }

        #[test]
        fn a_back_edge_is_reported_as_a_cycle_through_it(n in 2usize..30) {
            // A chain t0 <- t1 <- ... <- t(n-1), plus t0 depending on the last one.
            let mut tasks: Vec<serde_json::Value> = (0..n)
                .map(|i| json!({"id": format!("t{i}"), "handler": "noop", "depends_on": if i == 0 { vec![] } else { vec![format!("t{}", i - 1)] }}))
                .collect();
            tasks[0]["depends_on"] = json!([format!("t{}", n - 1)]);
            let errs = validate(spec(json!({"tasks": tasks})), &Limits::default()).unwrap_err().0;
            prop_assert_eq!(errs.len(), 1);
            prop_assert_eq!(errs[0].code, ProblemCode::Cycle);
            prop_assert_eq!(errs[0].tasks.len(), n);
        }
    }
}

#[test]
fn token_counts_beyond_what_the_store_holds_are_refused() {
    let big = u64::try_from(i64::MAX).unwrap() + 1;
    let p = only(json!({
        "tasks": [{"id": "a", "handler": "h"}],
        "concurrency_limits": {"k": {"tpm": big}},
    }));
    assert_eq!(p.code, ProblemCode::InvalidLimit, "{}", p.message);
    let p = only(json!({
        "tasks": [{"id": "a", "handler": "h"}],
        "budget": {"max_tokens": big},
    }));
    assert_eq!(p.code, ProblemCode::InvalidBudget, "{}", p.message);
    let fits = i64::MAX;
    let at_the_limit = spec(json!({
        "tasks": [{"id": "a", "handler": "h", "budget": {"max_tokens": fits}}],
        "concurrency_limits": {"k": {"tpm": fits}},
    }));
    assert!(validate(at_the_limit, &Limits::default()).is_ok());
}

/// Every task's parents and children, by id, as the graph holds them.
fn shape(dag: &Dag) -> Vec<(String, Vec<String>, Vec<String>)> {
    let ids = |xs: &[u32]| xs.iter().map(|&x| dag.task(x).id.clone()).collect();
    (0..dag.len() as u32)
        .map(|i| {
            (
                dag.task(i).id.clone(),
                ids(dag.parents(i)),
                ids(dag.children(i)),
            )
        })
        .collect()
}

#[test]
fn spawning_costs_the_spawn_not_the_run_and_matches_a_fresh_validation() {
    // 2,000 tasks, each feeding one shared `end`, each spawning 10 children (a chain
    // of two and eight loose ones): a graph of 22,001 tasks built 2,000 times over.
    let mut tasks: Vec<_> = (0..2_000)
        .map(|i| json!({"id": format!("t{i}"), "handler": "noop"}))
        .collect();
    let deps: Vec<String> = (0..2_000).map(|i| format!("t{i}")).collect();
    tasks.push(json!({"id": "end", "handler": "noop", "depends_on": deps}));
    let limits = Limits {
        max_dependencies: 30_000,
        ..Limits::default()
    };
    let mut dag = validate(spec(json!({"tasks": tasks})), &limits).unwrap();
    let children: Vec<serde_json::Value> = (0..10)
        .map(|c| match c {
            1 => json!({"id": "c1", "handler": "noop", "depends_on": ["c0"]}),
            _ => json!({"id": format!("c{c}"), "handler": "noop"}),
        })
        .collect();
    let before = work::done();
    for i in 0..2_000 {
        let added = grow(&mut dag, i, &children, &limits).unwrap();
        assert_eq!(added.len(), 10);
    }
    let spent = work::done() - before;
    assert_eq!(dag.len(), 22_001);
    // Checking the whole run on each spawn would cost over 20 million units; the
    // spawns' own size is 20,000 tasks and ~60,000 edges.
    assert!(spent < 500_000, "2,000 spawns cost {spent} units of work");

    let end = dag.index_of("end").unwrap();
    assert_eq!(dag.parents(end).len(), 22_000);
    assert_eq!(
        dag.parents(dag.index_of("t7.c1").unwrap()),
        &[dag.index_of("t7.c0").unwrap()]
    );
    assert_eq!(dag.parents(dag.index_of("t7.c0").unwrap()), &[7]);
    let fresh = validate(dag.to_spec(), &limits).unwrap();
    assert_eq!(shape(&dag), shape(&fresh));
}

#[test]
fn a_refused_spawn_leaves_the_graph_as_it_was() {
    let mut dag = validate(
        spec(json!({"tasks": [
            {"id": "a", "handler": "noop"},
            {"id": "b", "handler": "noop", "depends_on": ["a"]},
        ]})),
        &Limits::default(),
    )
    .unwrap();
    let before = shape(&dag);
    let cycle = json!([
        {"id": "x", "handler": "noop", "depends_on": ["y"]},
        {"id": "y", "handler": "noop", "depends_on": ["x"]},
    ]);
    let e = grow(&mut dag, 0, cycle.as_array().unwrap(), &Limits::default()).unwrap_err();
    assert_eq!(e.0[0].code, ProblemCode::Cycle);
    assert!(e.0[0].message.contains("a.x"), "{}", e.0[0].message);
    let twice = json!([
        {"id": "x", "handler": "noop"},
        {"id": "x", "handler": "noop"},
    ]);
    let e = grow(&mut dag, 0, twice.as_array().unwrap(), &Limits::default()).unwrap_err();
    assert_eq!(e.0[0].code, ProblemCode::DuplicateId);
    assert_eq!(shape(&dag), before);
    assert_eq!(dag.len(), 2);
    // Spawning the same ids twice from one task collides with the first spawn.
    let one = json!([{"id": "x", "handler": "noop"}]);
    grow(&mut dag, 0, one.as_array().unwrap(), &Limits::default()).unwrap();
    let e = grow(&mut dag, 0, one.as_array().unwrap(), &Limits::default()).unwrap_err();
    assert_eq!(e.0[0].code, ProblemCode::DuplicateId);
    assert_eq!(dag.parents(1), &[0, 2], "b waits on a and its child");
}
