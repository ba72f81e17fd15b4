//! How `apex runs` and `apex run show` print: the runs table, the run header and its
//! tasks table by DAG depth.

use super::super::output::{self, Cell, Table};
use super::super::run_layout::{id_index, task_rows, Lineage, Row};
use super::super::shapes::{sum_usage, Run, RunSummary, Task, TaskState, Usage, UsageExt};
use anstyle::Style;
use std::collections::{BTreeMap, HashMap, HashSet};

/// The `apex runs` table; a COST column appears when any run reports usage.
pub(super) fn runs_table(runs: &[RunSummary]) -> String {
    let costs = runs.iter().any(|r| !r.usage.is_zero());
    let mut headers = vec!["ID", "NAME", "STATE", "DONE", "FAILED"];
    if costs {
        headers.push("COST");
    }
    headers.extend(["CREATED", "DURATION"]);
    let mut table = Table::new(&headers);
    for r in runs {
        let failed = r.count("failed");
        let mut row = vec![
            Cell::plain(&r.id),
            Cell::plain(&r.name),
            Cell::state(r.state.as_str()),
            Cell::plain(format!("{}/{}", r.done(), r.task_count)),
            if failed > 0 {
                Cell::styled(failed.to_string(), output::state_style("failed"))
            } else {
                Cell::plain("0")
            },
        ];
        if costs {
            row.push(Cell::plain(if r.usage.is_zero() {
                "-".into()
            } else {
                output::cost(r.usage.cost_usd)
            }));
        }
        row.push(Cell::plain(output::ago(Some(r.created_at_ms))));
        row.push(Cell::plain(output::span(
            Some(r.created_at_ms),
            r.finished_at_ms,
        )));
        table.row(row);
    }
    table.render()
}
/// What `apex run show` prints.
pub fn render_run(run: &Run, all: bool) -> String {
    let r = &run.summary;
    let mut text = format!(
        "run {}  {}  {}\n  created {} · took {} · {} tasks: {}\n",
        output::bold(&r.id),
        r.name,
        output::state(r.state.as_str()),
        output::timestamp(Some(r.created_at_ms)),
        output::span(Some(r.created_at_ms), r.finished_at_ms),
        r.task_count,
        counts_line(r),
    );
    if let Some(who) = provenance(run) {
        text.push_str(&format!("  {who}\n"));
    }
    let usage = run_usage(run);
    if !usage.is_zero() {
        text.push_str(&format!("  usage: {}\n", output::usage_long(&usage)));
    }
    text.push('\n');
    let tasks = run.tasks.as_deref().unwrap_or_default();
    text.push_str(&tasks_table(tasks, all));
    let failed: Vec<&Task> = task_rows(tasks, true)
        .iter()
        .filter_map(|row| match row {
            Row::Task { index, .. } => Some(&tasks[*index]),
            Row::More { .. } => None,
        })
        .filter(|t| t.state == TaskState::Failed)
        .collect();
    if !failed.is_empty() {
        let heading = output::paint(output::state_style("failed"), "failed tasks:");
        text.push_str(&format!("\n{heading}\n"));
        for t in failed {
            let why = t
                .error
                .as_ref()
                .map_or("no error recorded".into(), |e| e.one_line());
            text.push_str(&format!(
                "  {} (attempt {}/{}): {}\n    {}\n",
                output::bold(&t.id),
                t.attempt,
                t.retries + 1,
                output::paint(output::state_style("failed"), &why),
                output::dim(&format!("details: apex task show {} {}", r.id, t.id)),
            ));
        }
    }
    text
}

/// Who created the run and, as its own events tell, who last retried it and who
/// cancelled it: `created by ci · cancelled by ops`.
fn provenance(run: &Run) -> Option<String> {
    let by_of = |state: &str, skip: usize| {
        run.history
            .iter()
            .skip(skip)
            .rev()
            .find(|e| e.state.as_deref() == Some(state))
            .and_then(|e| e.by.clone())
    };
    let mut parts = Vec::new();
    if let Some(by) = &run.summary.created_by {
        parts.push(format!("created by {by}"));
    }
    // The first `running` is the run's creation; a later one is a retry.
    if let Some(by) = by_of("running", 1) {
        parts.push(format!("retried by {by}"));
    }
    if run.summary.state == crate::api_types::RunState::Cancelled {
        if let Some(by) = by_of("cancelled", 0) {
            parts.push(format!("cancelled by {by}"));
        }
    }
    (!parts.is_empty()).then(|| parts.join(" · "))
}

/// The run's usage as the server sums it, or as its tasks add up when it sends no sum.
pub fn run_usage(run: &Run) -> Usage {
    if run.summary.usage.is_zero() {
        sum_usage(run.tasks.iter().flatten().map(|t| &t.usage))
    } else {
        run.summary.usage
    }
}

/// The task table of `run show`. AGENT and USAGE columns appear only for runs with agents
/// or usage, so plain runs read as they always did.
fn tasks_table(tasks: &[Task], all: bool) -> String {
    let agents = tasks.iter().any(|t| t.agent.is_some());
    let usage = tasks.iter().any(|t| !t.usage.is_zero());
    let mut headers = vec!["TASK", "STATE"];
    if agents {
        headers.push("AGENT");
    }
    headers.extend(["ATTEMPT", "DURATION"]);
    if usage {
        headers.push("USAGE");
    }
    headers.extend(["WORKER", "DEPENDS ON"]);
    let lineage = Lineage::of(tasks);
    let index = id_index(tasks);
    let mut table = Table::new(&headers);
    for row in task_rows(tasks, all) {
        let mut cells = Vec::with_capacity(headers.len());
        match row {
            Row::Task { index: i, prefix } => {
                let t = &tasks[i];
                cells.push(Cell::plain(format!("{prefix}{}", t.id)));
                cells.push(Cell::state(t.state.as_str()));
                if agents {
                    cells.push(Cell::plain(t.agent.as_deref().unwrap_or("-")));
                }
                cells.push(Cell::plain(format!("{}/{}", t.attempt, t.retries + 1)));
                cells.push(Cell::plain(output::span(t.started_at_ms, t.finished_at_ms)));
                if usage {
                    cells.push(Cell::plain(output::usage_cell(Some(&t.usage))));
                }
                cells.push(Cell::plain(t.worker_id.as_deref().unwrap_or("-")));
                cells.push(Cell::plain(dependency_list(
                    &t.depends_on,
                    &index,
                    &lineage,
                )));
            }
            Row::More { prefix, hidden } => {
                let hidden_tasks = || hidden.iter().map(|&h| &tasks[h]);
                cells.push(Cell::plain(format!(
                    "{prefix}… {} more spawned",
                    hidden.len()
                )));
                cells.push(Cell::plain(state_counts(hidden_tasks())));
                if agents {
                    cells.push(Cell::plain(""));
                }
                cells.extend([Cell::plain(""), Cell::plain("")]);
                if usage {
                    let sum = sum_usage(hidden_tasks().map(|t| &t.usage));
                    cells.push(Cell::plain(output::usage_cell(Some(&sum))));
                }
                cells.push(Cell::styled("--all lists them", Style::new().dimmed()));
            }
        }
        table.row(cells);
    }
    table.render()
}

/// `45 succeeded, 2 failed`: how a set of tasks stands, most telling first.
fn state_counts<'a>(tasks: impl Iterator<Item = &'a Task>) -> String {
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for t in tasks {
        *counts.entry(t.state.as_str()).or_default() += 1;
    }
    STATE_ORDER
        .iter()
        .filter_map(|s| counts.get(s).map(|n| format!("{n} {s}")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Task states, most telling first.
const STATE_ORDER: [&str; 9] = [
    "waiting",
    "succeeded",
    "failed",
    "skipped",
    "cancelled",
    "running",
    "queued",
    "ready",
    "pending",
];

/// `2 succeeded, 1 failed, 1 skipped`: the non-zero task counts, most telling first.
pub fn counts_line(r: &RunSummary) -> String {
    let parts: Vec<String> = STATE_ORDER
        .iter()
        .filter(|s| r.count(s) > 0)
        .map(|s| format!("{} {}", r.count(s), output::state(s)))
        .collect();
    if parts.is_empty() {
        "none started".into()
    } else {
        parts.join(", ")
    }
}

/// At most three dependencies by name, then how many more. Dependencies on tasks spawned
/// by another dependency are folded into it: `plan (+6 spawned)`.
fn dependency_list(deps: &[String], index: &HashMap<&str, usize>, lineage: &Lineage) -> String {
    let positions: Vec<Option<usize>> = deps
        .iter()
        .map(|d| index.get(d.as_str()).copied())
        .collect();
    let among: HashSet<usize> = positions.iter().flatten().copied().collect();
    let mut folded: HashMap<usize, usize> = HashMap::new();
    let mut listed: Vec<(&str, Option<usize>)> = Vec::new();
    for (dep, &pos) in deps.iter().zip(&positions) {
        match pos.and_then(|p| lineage.ancestors(p).find(|a| among.contains(a))) {
            Some(a) => *folded.entry(a).or_default() += 1,
            None => listed.push((dep.as_str(), pos)),
        }
    }
    let names: Vec<String> = listed
        .iter()
        .map(|&(dep, pos)| match pos.and_then(|p| folded.get(&p)) {
            Some(k) => format!("{dep} (+{k} spawned)"),
            None => dep.to_owned(),
        })
        .collect();
    match names.len() {
        0..=3 => names.join(", "),
        n => format!("{}, +{} more", names[..3].join(", "), n - 3),
    }
}
