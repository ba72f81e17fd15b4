//! Runs: `apex runs` (the recent ones), `apex run show` (one, with its tasks ordered by
//! DAG depth), `apex cancel` and `apex retry`.

use super::client::{encode, Client, Connection};
use super::error::{CliError, Exit};
use super::output::{self, Cell, Printer, Table};
use super::wire::{self, Run, RunSummary, Task};
use serde_json::Value;
use std::collections::HashMap;

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
    /// Print the API's answer as JSON: `{"runs": [RunSummary], "next": RUN_ID|null}`.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: Connection,
}

/// `apex run …`.
#[derive(Debug, clap::Subcommand)]
pub enum RunCommand {
    /// Show a run and its tasks: state, attempts, duration and worker, by DAG depth.
    Show(RunIdArgs),
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
    let mut table = Table::new(&[
        "ID", "NAME", "STATE", "DONE", "FAILED", "CREATED", "DURATION",
    ]);
    for r in &runs {
        let failed = r.count("failed");
        table.row(vec![
            Cell::plain(&r.id),
            Cell::plain(&r.name),
            Cell::state(&r.state),
            Cell::plain(format!("{}/{}", r.done(), r.task_count)),
            if failed > 0 {
                Cell::styled(failed.to_string(), output::state_style("failed"))
            } else {
                Cell::plain("0")
            },
            Cell::plain(output::ago(r.created_at_ms)),
            Cell::plain(output::span(r.created_at_ms, r.finished_at_ms)),
        ]);
    }
    out.block(&table.render())?;
    if let Some(next) = body["next"].as_str() {
        out.line(&output::dim(&format!(
            "older runs: apex runs --before {next}"
        )))?;
    }
    Ok(Exit::Ok)
}

/// Each task's depth in the DAG: 0 without dependencies, else one more than its deepest
/// dependency. Unknown dependencies are ignored and a cycle (which the server never
/// accepts) cannot loop: a task is given a depth before its dependencies are followed.
pub fn depths(tasks: &[Task]) -> Vec<usize> {
    let index: HashMap<&str, usize> = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i))
        .collect();
    let mut depth: Vec<Option<usize>> = vec![None; tasks.len()];
    for start in 0..tasks.len() {
        // Iterative depth-first walk: a deep chain must not overflow the stack.
        let mut stack = vec![(start, false)];
        while let Some((i, expanded)) = stack.pop() {
            if depth[i].is_some() {
                continue;
            }
            let deps = tasks[i]
                .depends_on
                .iter()
                .filter_map(|d| index.get(d.as_str()).copied());
            if expanded {
                let d = deps.map(|j| depth[j].map_or(0, |d| d + 1)).max();
                depth[i] = Some(d.unwrap_or(0));
            } else {
                stack.push((i, true));
                stack.extend(deps.filter(|&j| depth[j].is_none()).map(|j| (j, false)));
            }
        }
    }
    depth.into_iter().map(|d| d.unwrap_or(0)).collect()
}

/// The tasks' positions ordered by depth, then by submission order.
fn by_depth(depth: &[usize]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..depth.len()).collect();
    order.sort_by_key(|&i| (depth[i], i));
    order
}

/// `apex run show ID`.
pub async fn show(args: &RunIdArgs, out: &mut Printer) -> Result<Exit, CliError> {
    let client = Client::new(&args.conn)?;
    let mut body = client
        .get(&format!("/api/v1/runs/{}", encode(&args.id)))
        .await
        .map_err(|e| e.with_not_found_hint("check the id; `apex runs` lists recent runs"))?;
    let run: Run = wire::parse(&body, "run").map_err(|m| client.unexpected(m))?;
    let depth = depths(&run.tasks);
    let order = by_depth(&depth);
    if args.json {
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
    out.block(&render_run(&run, &depth, &order))?;
    Ok(Exit::Ok)
}

fn render_run(run: &Run, depth: &[usize], order: &[usize]) -> String {
    let r = &run.summary;
    let mut text = format!(
        "run {}  {}  {}\n  created {} · took {} · {} tasks: {}\n\n",
        output::bold(&r.id),
        r.name,
        output::state(&r.state),
        output::timestamp(r.created_at_ms),
        output::span(r.created_at_ms, r.finished_at_ms),
        r.task_count,
        counts_line(r),
    );
    let mut table = Table::new(&[
        "TASK",
        "STATE",
        "ATTEMPT",
        "DURATION",
        "WORKER",
        "DEPENDS ON",
    ]);
    for &i in order {
        let t = &run.tasks[i];
        let name = match depth[i] {
            0 => t.id.clone(),
            d => format!("{}└ {}", "  ".repeat(d - 1), t.id),
        };
        table.row(vec![
            Cell::plain(name),
            Cell::state(&t.state),
            Cell::plain(format!("{}/{}", t.attempt, t.retries + 1)),
            Cell::plain(output::span(t.started_at_ms, t.finished_at_ms)),
            Cell::plain(t.worker_id.as_deref().unwrap_or("-")),
            Cell::plain(dependency_list(&t.depends_on)),
        ]);
    }
    text.push_str(&table.render());
    let failed: Vec<&Task> = order
        .iter()
        .map(|&i| &run.tasks[i])
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

/// `2 succeeded, 1 failed, 1 skipped`: the non-zero task counts, most telling first.
pub fn counts_line(r: &RunSummary) -> String {
    let order = [
        "succeeded",
        "failed",
        "skipped",
        "cancelled",
        "running",
        "queued",
        "ready",
        "pending",
    ];
    let parts: Vec<String> = order
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

/// At most three dependencies by name, then how many more.
fn dependency_list(deps: &[String]) -> String {
    match deps.len() {
        0..=3 => deps.join(", "),
        n => format!("{}, +{} more", deps[..3].join(", "), n - 3),
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
