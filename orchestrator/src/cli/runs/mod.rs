//! Runs: `apex runs` (the recent ones), `apex run show` (one, with its tasks ordered by
//! DAG depth, spawned tasks nested under the task that spawned them), `apex cancel` and
//! `apex retry`.

use super::client::{encode, Client, Connection};
use super::error::{CliError, Exit};
use super::output::{self, Printer};
use super::run_layout::by_depth;
pub use super::run_layout::{depths, task_rows, Row};
use super::shapes::{self, Run, RunSummary};
use crate::api_types::RunList;
use serde_json::Value;

mod render;
use render::runs_table;
pub use render::{counts_line, render_run, run_usage};

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
            // Waiting runs are gathered from several pages: there is no next page to name.
            out.json(&RunList { runs, next: None })?;
            return Ok(Exit::Ok);
        }
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
        shapes::parse(&body["runs"], "runs").map_err(|m| client.unexpected(m))?;
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
    let run: Run = shapes::parse(&body, "run").map_err(|m| client.unexpected(m))?;
    if args.json {
        let depth = depths(run.tasks.as_deref().unwrap_or_default());
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
    let r: RunSummary = shapes::parse(&body, "run").map_err(|m| client.unexpected(m))?;
    out.line(&format!(
        "cancelling run {} ({}): running tasks are told to stop",
        output::bold(&r.id),
        output::state(r.state.as_str())
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
    let r: RunSummary = shapes::parse(&body, "run").map_err(|m| client.unexpected(m))?;
    out.line(&format!(
        "retrying run {} ({}); follow it with `apex watch {}`",
        output::bold(&r.id),
        output::state(r.state.as_str()),
        r.id
    ))?;
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests;
