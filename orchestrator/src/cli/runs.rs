//! Runs: `apex runs` (the recent ones), `apex run show` (one, with its tasks ordered by
//! DAG depth, spawned tasks nested under the task that spawned them), `apex cancel` and
//! `apex retry`.

use super::client::{encode, Client, Connection};
use super::error::{CliError, Exit};
use super::output::{self, Cell, Printer, Table};
use super::run_layout::{by_depth, id_index, Lineage};
pub use super::run_layout::{depths, task_rows, Row};
use super::wire::{self, Run, RunSummary, Task, Usage};
use anstyle::Style;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Run states, as `--state` accepts them.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum RunState {
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl RunState {
    fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
        }
    }
}

/// Arguments of `apex runs`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ListArgs {
    /// Only runs in this state.
    #[arg(long, value_enum)]
    pub state: Option<RunState>,
    /// How many runs to show.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=500))]
    pub limit: u32,
    /// Only runs older than this one (to page through the list).
    #[arg(long, value_name = "RUN_ID")]
    pub before: Option<String>,
    /// Only running runs with a task waiting for a decision (`apex approve` takes it).
    #[arg(long, conflicts_with = "state")]
    pub waiting: bool,
    /// Print the API's answer as JSON: `{"runs": [RunSummary], "next": RUN_ID|null}`.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: Connection,
    /// `apex runs delete ID` (cli/run_delete.rs).
    #[command(subcommand)]
    pub command: Option<super::run_delete::RunsCommand>,
}

/// `apex run …`.
#[derive(Debug, clap::Subcommand)]
pub enum RunCommand {
    /// Show a run and its tasks: state, attempts, duration, usage and worker, by DAG
    /// depth, with spawned tasks under the task that spawned them.
    Show(ShowArgs),
}

/// Arguments of `apex run show`.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub run: RunIdArgs,
    /// List every spawned task, instead of a count past the first few.
    #[arg(long)]
    pub all: bool,
}

/// Arguments of commands about one run.
#[derive(Debug, clap::Args)]
pub struct RunIdArgs {
    /// The run's id (`apex runs` lists them).
    #[arg(value_name = "RUN_ID")]
    pub id: String,
    /// Print JSON: the API's answer (for `run show`, tasks are ordered by depth and
    /// each has a `depth`).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: Connection,
}

/// `apex runs`.
pub async fn list(args: &ListArgs, out: &mut Printer) -> Result<Exit, CliError> {
    let client = Client::new(&args.conn)?;
    if args.waiting {
        let runs = super::approve::waiting_runs(&client, args).await?;
        if args.json {
            out.json(&serde_json::json!({"runs": runs, "next": null}))?;
            return Ok(Exit::Ok);
        }
        let runs: Vec<RunSummary> = wire::parse(&serde_json::Value::Array(runs), "runs")
            .map_err(|m| client.unexpected(m))?;
        if runs.is_empty() {
            out.line("no run waits for a decision")?;
        } else {
            out.block(&runs_table(&runs))?;
            out.line(&output::dim("`apex run show ID` shows the waiting tasks"))?;
        }
        return Ok(Exit::Ok);
    }
    let mut path = format!("/api/v1/runs?limit={}", args.limit);
    if let Some(s) = args.state {
        path.push_str(&format!("&state={}", s.as_str()));
    }
    if let Some(b) = &args.before {
        path.push_str(&format!("&before={}", encode(b)));
    }
    let body = client.get(&path).await?;
    if args.json {
        out.json(&body)?;
        return Ok(Exit::Ok);
    }
    let runs: Vec<RunSummary> =
        wire::parse(&body["runs"], "runs").map_err(|m| client.unexpected(m))?;
    if runs.is_empty() {
        out.line("no runs yet; submit one with `apex submit FILE`")?;
        return Ok(Exit::Ok);
    }
    out.block(&runs_table(&runs))?;
    if let Some(next) = body["next"].as_str() {
        out.line(&output::dim(&format!(
            "older runs: apex runs --before {next}"
        )))?;
    }
    Ok(Exit::Ok)
}

/// The `apex runs` table; a COST column appears when any run reports usage.
fn runs_table(runs: &[RunSummary]) -> String {
    let costs = runs.iter().any(|r| r.usage.is_some_and(|u| !u.is_zero()));
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
            Cell::state(&r.state),
            Cell::plain(format!("{}/{}", r.done(), r.task_count)),
            if failed > 0 {
                Cell::styled(failed.to_string(), output::state_style("failed"))
            } else {
                Cell::plain("0")
            },
        ];
        if costs {
            row.push(Cell::plain(match r.usage {
                Some(u) if !u.is_zero() => output::cost(u.cost_usd),
                _ => "-".into(),
            }));
        }
        row.push(Cell::plain(output::ago(r.created_at_ms)));
        row.push(Cell::plain(output::span(r.created_at_ms, r.finished_at_ms)));
        table.row(row);
    }
    table.render()
}

/// Tasks asked for per page when a run's tasks continue past its document.
const TASK_PAGE: u32 = 5_000;

/// Completes a Run document whose tasks the server cut short (`tasks_next_after`, for a
/// run of more than its `--max-inline-tasks`): appends the rest, page by page from
/// `GET /api/v1/runs/{id}/tasks`, and removes the cursor.
pub async fn complete_tasks(client: &Client, run: &mut Value) -> Result<(), CliError> {
    let id = run["id"].as_str().unwrap_or_default().to_owned();
    let mut after = run
        .as_object_mut()
        .and_then(|o| o.remove("tasks_next_after"))
        .and_then(|v| v.as_str().map(str::to_owned));
    while let Some(cursor) = after {
        let mut page = client
            .get(&format!(
                "/api/v1/runs/{}/tasks?after={}&limit={TASK_PAGE}",
                encode(&id),
                encode(&cursor)
            ))
            .await?;
        let tasks = match page.get_mut("tasks").and_then(Value::as_array_mut) {
            Some(tasks) => std::mem::take(tasks),
            None => return Err(client.unexpected("a page of tasks without `tasks`".into())),
        };
        after = page["next_after"].as_str().map(str::to_owned);
        // A cursor that does not move would page for ever.
        if after.as_deref() == Some(cursor.as_str()) || (tasks.is_empty() && after.is_some()) {
            return Err(client.unexpected(format!("the task pages of run {id} do not advance")));
        }
        match run.get_mut("tasks").and_then(Value::as_array_mut) {
            Some(all) => all.extend(tasks),
            None => run["tasks"] = Value::Array(tasks),
        }
    }
    Ok(())
}

/// `apex run show ID`.
pub async fn show(show: &ShowArgs, out: &mut Printer) -> Result<Exit, CliError> {
    let args = &show.run;
    let client = Client::new(&args.conn)?;
    let mut body = client
        .get(&format!("/api/v1/runs/{}", encode(&args.id)))
        .await
        .map_err(|e| e.with_not_found_hint("check the id; `apex runs` lists recent runs"))?;
    complete_tasks(&client, &mut body).await?;
    let run: Run = wire::parse(&body, "run").map_err(|m| client.unexpected(m))?;
    if args.json {
        let depth = depths(&run.tasks);
        let order = by_depth(&depth);
        if let Some(tasks) = body.get_mut("tasks").and_then(Value::as_array_mut) {
            let mut sorted: Vec<Value> = order
                .iter()
                .map(|&i| {
                    let mut t = std::mem::take(&mut tasks[i]);
                    t["depth"] = depth[i].into();
                    t
                })
                .collect();
            std::mem::swap(tasks, &mut sorted);
        }
        out.json(&body)?;
        return Ok(Exit::Ok);
    }
    out.block(&render_run(&run, show.all))?;
    Ok(Exit::Ok)
}

/// What `apex run show` prints.
pub fn render_run(run: &Run, all: bool) -> String {
    let r = &run.summary;
    let mut text = format!(
        "run {}  {}  {}\n  created {} · took {} · {} tasks: {}\n",
        output::bold(&r.id),
        r.name,
        output::state(&r.state),
        output::timestamp(r.created_at_ms),
        output::span(r.created_at_ms, r.finished_at_ms),
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
    text.push_str(&tasks_table(&run.tasks, all));
    let failed: Vec<&Task> = task_rows(&run.tasks, true)
        .iter()
        .filter_map(|row| match row {
            Row::Task { index, .. } => Some(&run.tasks[*index]),
            Row::More { .. } => None,
        })
        .filter(|t| t.state == "failed")
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
    if run.summary.state == "cancelled" {
        if let Some(by) = by_of("cancelled", 0) {
            parts.push(format!("cancelled by {by}"));
        }
    }
    (!parts.is_empty()).then(|| parts.join(" · "))
}

/// The run's usage as the server sums it, or as its tasks add up when it sends no sum.
pub fn run_usage(run: &Run) -> Usage {
    match run.summary.usage {
        Some(u) if !u.is_zero() => u,
        _ => Usage::sum(run.tasks.iter().map(|t| t.usage.as_ref())),
    }
}

/// The task table of `run show`. AGENT and USAGE columns appear only for runs with agents
/// or usage, so plain runs read as they always did.
fn tasks_table(tasks: &[Task], all: bool) -> String {
    let agents = tasks.iter().any(|t| t.agent.is_some());
    let usage = tasks.iter().any(|t| t.usage.is_some_and(|u| !u.is_zero()));
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
                cells.push(Cell::state(&t.state));
                if agents {
                    cells.push(Cell::plain(t.agent.as_deref().unwrap_or("-")));
                }
                cells.push(Cell::plain(format!("{}/{}", t.attempt, t.retries + 1)));
                cells.push(Cell::plain(output::span(t.started_at_ms, t.finished_at_ms)));
                if usage {
                    cells.push(Cell::plain(output::usage_cell(t.usage.as_ref())));
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
                    let sum = Usage::sum(hidden_tasks().map(|t| t.usage.as_ref()));
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

/// `apex cancel ID`.
pub async fn cancel(args: &RunIdArgs, out: &mut Printer) -> Result<Exit, CliError> {
    let client = Client::new(&args.conn)?;
    let body = client
        .post(&format!("/api/v1/runs/{}/cancel", encode(&args.id)), None)
        .await
        .map_err(|e| match e {
            CliError::Conflict(m) => {
                CliError::Conflict(format!("{m}; only a running run can be cancelled"))
            }
            other => other,
        })?;
    if args.json {
        out.json(&body)?;
        return Ok(Exit::Ok);
    }
    let r: RunSummary = wire::parse(&body, "run").map_err(|m| client.unexpected(m))?;
    out.line(&format!(
        "cancelling run {} ({}): running tasks are told to stop",
        output::bold(&r.id),
        output::state(&r.state)
    ))?;
    Ok(Exit::Ok)
}

/// `apex retry ID`.
pub async fn retry(args: &RunIdArgs, out: &mut Printer) -> Result<Exit, CliError> {
    let client = Client::new(&args.conn)?;
    let body = client
        .post(&format!("/api/v1/runs/{}/retry", encode(&args.id)), None)
        .await?;
    if args.json {
        out.json(&body)?;
        return Ok(Exit::Ok);
    }
    let r: RunSummary = wire::parse(&body, "run").map_err(|m| client.unexpected(m))?;
    out.line(&format!(
        "retrying run {} ({}); follow it with `apex watch {}`",
        output::bold(&r.id),
        output::state(&r.state),
        r.id
    ))?;
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tasks(spec: &[(&str, &[&str])]) -> Vec<Task> {
        spec.iter()
            .map(|(id, deps)| {
                serde_json::from_value(json!({"id": id, "depends_on": deps})).unwrap()
            })
            .collect()
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
        serde_json::from_value(body).unwrap()
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
            names(&task_rows(&r.tasks, false), &r.tasks),
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
        let t: Vec<Task> = serde_json::from_value(json!([
            {"id": "a"},
            {"id": "b", "depends_on": ["a"]},
            {"id": "b.x", "parent": "b", "depends_on": ["b"]},
            {"id": "b.x.y", "parent": "b.x", "depends_on": ["b.x"]},
            {"id": "b.z", "parent": "b", "depends_on": ["b"]},
        ]))
        .unwrap();
        assert_eq!(
            names(&task_rows(&t, false), &t),
            ["a", "└ b", "    ↳ b.x", "      ↳ b.x.y", "    ↳ b.z"]
        );
    }

    #[test]
    fn many_spawned_tasks_are_counted_unless_all_are_asked_for() {
        let r = swarm(40);
        let rows = task_rows(&r.tasks, false);
        assert_eq!(
            names(&rows, &r.tasks),
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
        assert_eq!(task_rows(&r.tasks, true).len(), 43);

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
        let event =
            |state: &str, by: Option<&str>| json!({"kind": "run", "state": state, "by": by});
        let mut r = run(json!([]), json!({"created_by": "ci"}));
        r.summary.state = "cancelled".into();
        r.history = serde_json::from_value(json!([
            event("running", Some("ci")),
            event("failed", None),
            event("running", Some("ops")),
            event("cancelled", Some("oncall")),
        ]))
        .unwrap();
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
        r.summary.usage = None;
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
                .map(|(i, u)| {
                    serde_json::from_value(json!({"id": format!("r_{i}"), "usage": u})).unwrap()
                })
                .collect()
        };
        let plain_runs = plain(&runs_table(&summaries(vec![Value::Null, usage(0, 0, 0.0)])));
        assert!(!plain_runs.contains("COST"), "{plain_runs}");
        let with_cost = plain(&runs_table(&summaries(vec![
            usage(10, 5, 0.25),
            Value::Null,
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
            t.push(serde_json::from_value(json!({"id": id, "depends_on": deps})).unwrap());
        }
        let depth = depths(&t);
        assert_eq!(depth[0], 99_999);
        assert_eq!(depth[99_999], 0);
    }
}
