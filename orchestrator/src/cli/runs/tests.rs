//! Unit tests of `apex runs` and `apex run show` rendering.

use super::super::shapes::fixtures;
use super::render::runs_table;
use super::*;
use crate::api_types::{RunState, Task, Usage};
use serde_json::json;

fn tasks(spec: &[(&str, &[&str])]) -> Vec<Task> {
    spec.iter()
        .map(|(id, deps)| fixtures::task(json!({"id": id, "depends_on": deps})))
        .collect()
}

/// The run's tasks (all of them in these tests).
fn all(r: &Run) -> &[Task] {
    r.tasks.as_deref().unwrap_or_default()
}

#[test]
fn depth_follows_the_longest_chain_whatever_the_submission_order() {
    //   a ── b ── d
    //    \── c ──/   e (alone)
    // d is listed first, so its dependencies are resolved after it.
    let t = tasks(&[
        ("d", &["b", "c"]),
        ("b", &["a"]),
        ("a", &[]),
        ("c", &["a"]),
        ("e", &[]),
    ]);
    let depth = depths(&t);
    assert_eq!(depth, vec![2, 1, 0, 1, 0]);
    let ids: Vec<&str> = by_depth(&depth).iter().map(|&i| t[i].id.as_str()).collect();
    assert_eq!(ids, ["a", "e", "b", "c", "d"]);
}

fn plain(text: &str) -> String {
    anstream::adapter::strip_str(text).to_string()
}

fn run(tasks: Value, summary: Value) -> Run {
    let mut body = summary;
    body["id"] = "r_1".into();
    body["name"] = "swarm".into();
    body["state"] = "succeeded".into();
    body["tasks"] = tasks;
    fixtures::run(body)
}

fn usage(input: u64, output: u64, cost: f64) -> Value {
    json!({"input_tokens": input, "output_tokens": output, "cost_usd": cost})
}

/// plan spawned `n` researchers; critique waited on plan, and so on all of them.
fn swarm(n: usize) -> Run {
    let kids: Vec<String> = (0..n).map(|i| format!("plan.{i}")).collect();
    let mut critique_deps = vec!["plan".to_string()];
    critique_deps.extend(kids.iter().cloned());
    let mut tasks = vec![
        json!({"id": "plan", "agent": "planner", "state": "succeeded", "usage": usage(100, 20, 0.001)}),
        json!({"id": "critique", "agent": "critic", "depends_on": critique_deps, "state": "succeeded"}),
        json!({"id": "report", "agent": "writer", "depends_on": ["critique"], "state": "succeeded"}),
    ];
    for (i, id) in kids.iter().enumerate() {
        let state = if i == n - 1 { "failed" } else { "succeeded" };
        tasks.push(json!({"id": id, "agent": "researcher", "parent": "plan",
                          "depends_on": ["plan"], "state": state, "usage": usage(10, 5, 0.0001)}));
    }
    run(
        Value::Array(tasks),
        json!({"usage": usage(1_100, 520, 0.0123)}),
    )
}

fn names(rows: &[Row], tasks: &[Task]) -> Vec<String> {
    rows.iter()
        .map(|row| match row {
            Row::Task { index, prefix } => format!("{prefix}{}", tasks[*index].id),
            Row::More { prefix, hidden } => format!("{prefix}+{}", hidden.len()),
        })
        .collect()
}

#[test]
fn spawned_tasks_nest_under_their_parent_and_the_dag_keeps_its_shape() {
    let r = swarm(2);
    // critique depends on plan.0 and plan.1 too, yet stays one level under plan.
    assert_eq!(
        names(&task_rows(all(&r), false), all(&r)),
        [
            "plan",
            "  ↳ plan.0",
            "  ↳ plan.1",
            "└ critique",
            "  └ report"
        ]
    );
}

#[test]
fn grandchildren_nest_one_level_deeper() {
    let t: Vec<Task> = fixtures::tasks(json!([
        {"id": "a"},
        {"id": "b", "depends_on": ["a"]},
        {"id": "b.x", "parent": "b", "depends_on": ["b"]},
        {"id": "b.x.y", "parent": "b.x", "depends_on": ["b.x"]},
        {"id": "b.z", "parent": "b", "depends_on": ["b"]},
    ]));
    assert_eq!(
        names(&task_rows(&t, false), &t),
        ["a", "└ b", "    ↳ b.x", "      ↳ b.x.y", "    ↳ b.z"]
    );
}

#[test]
fn many_spawned_tasks_are_counted_unless_all_are_asked_for() {
    let r = swarm(40);
    let rows = task_rows(all(&r), false);
    assert_eq!(
        names(&rows, all(&r)),
        [
            "plan",
            "  ↳ plan.0",
            "  ↳ plan.1",
            "  ↳ plan.2",
            "  ↳ +37",
            "└ critique",
            "  └ report"
        ]
    );
    assert_eq!(task_rows(all(&r), true).len(), 43);

    let text = plain(&render_run(&r, false));
    let more = text.lines().find(|l| l.contains("more spawned")).unwrap();
    assert!(more.starts_with("  ↳ … 37 more spawned"), "{text}");
    assert!(more.contains("36 succeeded, 1 failed"), "{text}");
    assert!(more.contains("555 tok · $0.0037"), "{text}");
    assert!(more.ends_with("--all lists them"), "{text}");
    // A failed task hidden in the count is still listed with its error.
    assert!(
        text.contains("failed tasks:\n  plan.39 (attempt 0/1)"),
        "{text}"
    );
}

#[test]
fn run_show_says_who_created_retried_and_cancelled_the_run() {
    let event = |state: &str, by: Option<&str>| json!({"kind": "run", "state": state, "by": by});
    let mut r = run(json!([]), json!({"created_by": "ci"}));
    r.summary.state = RunState::Cancelled;
    r.history = [
        event("running", Some("ci")),
        event("failed", None),
        event("running", Some("ops")),
        event("cancelled", Some("oncall")),
    ]
    .into_iter()
    .map(fixtures::event)
    .collect();
    let text = plain(&render_run(&r, false));
    assert_eq!(
        text.lines().nth(2),
        Some("  created by ci · retried by ops · cancelled by oncall"),
        "{text}"
    );
    // A server without token names prints as before.
    let old = plain(&render_run(&run(json!([]), json!({})), false));
    assert!(!old.contains(" by "), "{old}");
}

#[test]
fn run_show_prints_usage_and_agents_and_folds_spawned_dependencies() {
    let text = plain(&render_run(&swarm(2), false));
    assert!(
        text.contains("\n  usage: 1,100 in + 520 out tokens · $0.012\n"),
        "{text}"
    );
    let header = text.lines().find(|l| l.starts_with("TASK")).unwrap();
    let columns: Vec<&str> = header.split_whitespace().collect();
    assert_eq!(
        columns,
        ["TASK", "STATE", "AGENT", "ATTEMPT", "DURATION", "USAGE", "WORKER", "DEPENDS", "ON"]
    );
    let plan = text.lines().find(|l| l.starts_with("plan ")).unwrap();
    assert!(
        plan.contains("planner") && plan.contains("120 tok · $0.001 "),
        "{plan}"
    );
    let child = text.lines().find(|l| l.starts_with("  ↳ plan.0")).unwrap();
    assert!(
        child.contains("researcher") && child.contains("15 tok · $0.0001 "),
        "{child}"
    );
    let critique = text.lines().find(|l| l.starts_with("└ critique")).unwrap();
    assert!(critique.ends_with("plan (+2 spawned)"), "{critique}");
}

#[test]
fn a_run_without_agents_or_usage_reads_as_before() {
    let r = run(
        json!([{"id": "a", "state": "succeeded"}, {"id": "b", "depends_on": ["a"]}]),
        json!({"task_count": 2, "usage": usage(0, 0, 0.0)}),
    );
    let text = plain(&render_run(&r, false));
    assert!(!text.contains("usage"), "{text}");
    let header = text.lines().find(|l| l.starts_with("TASK")).unwrap();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["TASK", "STATE", "ATTEMPT", "DURATION", "WORKER", "DEPENDS", "ON"]
    );
}

#[test]
fn the_run_total_falls_back_to_the_sum_of_its_tasks() {
    let mut r = swarm(2);
    r.summary.usage = Usage::default();
    assert_eq!(
        run_usage(&r),
        Usage {
            input_tokens: 120,
            output_tokens: 30,
            cost_usd: 0.001 + 0.0002
        }
    );
}

#[test]
fn the_runs_table_has_a_cost_column_only_when_a_run_has_usage() {
    let summaries = |usages: Vec<Value>| -> Vec<RunSummary> {
        usages
            .into_iter()
            .enumerate()
            .map(|(i, u)| fixtures::summary(json!({"id": format!("r_{i}"), "usage": u})))
            .collect()
    };
    let plain_runs = plain(&runs_table(&summaries(vec![
        usage(0, 0, 0.0),
        usage(0, 0, 0.0),
    ])));
    assert!(!plain_runs.contains("COST"), "{plain_runs}");
    let with_cost = plain(&runs_table(&summaries(vec![
        usage(10, 5, 0.25),
        usage(0, 0, 0.0),
    ])));
    let lines: Vec<&str> = with_cost.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header[4..7], ["FAILED", "COST", "CREATED"], "{with_cost}");
    assert!(lines[1].contains("$0.25 "), "{with_cost}");
    assert!(lines[2].contains(" -  "), "{with_cost}");
}

#[test]
fn a_deep_chain_does_not_overflow_the_stack() {
    let ids: Vec<String> = (0..100_000).map(|i| format!("t{i}")).collect();
    let mut t: Vec<Task> = Vec::new();
    for (i, id) in ids.iter().enumerate().rev() {
        let deps: Vec<&str> = if i == 0 { vec![] } else { vec![&ids[i - 1]] };
        t.push(fixtures::task(json!({"id": id, "depends_on": deps})));
    }
    let depth = depths(&t);
    assert_eq!(depth[0], 99_999);
    assert_eq!(depth[99_999], 0);
}
