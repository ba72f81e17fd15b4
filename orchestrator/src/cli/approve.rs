//! `apex approve`, `apex reject` and `apex task cancel`: a person's decision about one
//! task of a running run (docs/API.md, "People in the loop").

use super::client::{encode, Client, Connection};
use super::error::{CliError, Exit};
use super::output::{self, Printer};
use super::shapes::{self, Task};
use crate::api_types::{ApproveRequest, BudgetRaise, RejectRequest, RunList, RunSummary};

/// Arguments naming one task, shared by the decisions.
#[derive(Debug, clap::Args)]
pub struct TaskRef {
    /// The run's id.
    #[arg(value_name = "RUN_ID")]
    pub run: String,
    /// The task's id within the run.
    #[arg(value_name = "TASK_ID")]
    pub task: String,
    /// Print the API's answer (the task) as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: Connection,
}

/// Arguments of `apex approve`.
#[derive(Debug, clap::Args)]
pub struct ApproveArgs {
    #[command(flatten)]
    pub task: TaskRef,
    /// A comment kept with the decision (its dependents see it in the task's output).
    #[arg(long)]
    pub comment: Option<String>,
    /// JSON handed to the dependents inside the task's output.
    #[arg(long, value_name = "JSON")]
    pub output: Option<String>,
    /// For a task waiting on a budget: raise the budget's max_cost_usd to this many
    /// US dollars.
    #[arg(long, value_name = "USD")]
    pub raise_cost: Option<f64>,
    /// For a task waiting on a budget: raise the budget's max_tokens to this many.
    #[arg(long, value_name = "N")]
    pub raise_tokens: Option<u64>,
}

/// Arguments of `apex reject`.
#[derive(Debug, clap::Args)]
pub struct RejectArgs {
    #[command(flatten)]
    pub task: TaskRef,
    /// A comment kept with the decision, in the task's error message.
    #[arg(long)]
    pub comment: Option<String>,
}

/// `apex approve RUN TASK`.
pub async fn approve(args: &ApproveArgs, out: &mut Printer) -> Result<Exit, CliError> {
    let output = match &args.output {
        Some(o) => Some(serde_json::from_str(o).map_err(|e| CliError::InvalidJson {
            path: "--output".into(),
            reason: e.to_string(),
        })?),
        None => None,
    };
    let raise = (args.raise_cost.is_some() || args.raise_tokens.is_some()).then_some(BudgetRaise {
        max_cost_usd: args.raise_cost,
        max_tokens: args.raise_tokens,
    });
    let done = if raise.is_some() {
        "raised the budget of"
    } else {
        "approved"
    };
    let body = ApproveRequest {
        comment: args.comment.clone(),
        output,
        raise,
    };
    decide(&args.task, "approve", Some(to_body(&body)?), done, out).await
}

/// `apex reject RUN TASK`.
pub async fn reject(args: &RejectArgs, out: &mut Printer) -> Result<Exit, CliError> {
    let body = RejectRequest {
        comment: args.comment.clone(),
    };
    decide(&args.task, "reject", Some(to_body(&body)?), "rejected", out).await
}

/// `apex task cancel RUN TASK`.
pub async fn cancel(args: &TaskRef, out: &mut Printer) -> Result<Exit, CliError> {
    decide(args, "cancel", None, "cancelled", out).await
}

/// A request body as JSON bytes.
fn to_body<T: serde::Serialize>(body: &T) -> Result<Vec<u8>, CliError> {
    serde_json::to_vec(body).map_err(|e| CliError::InvalidJson {
        path: "request body".into(),
        reason: e.to_string(),
    })
}

async fn decide(
    t: &TaskRef,
    action: &str,
    body: Option<Vec<u8>>,
    done: &str,
    out: &mut Printer,
) -> Result<Exit, CliError> {
    let client = Client::new(&t.conn)?;
    let path = format!(
        "/api/v1/runs/{}/tasks/{}/{action}",
        encode(&t.run),
        encode(&t.task)
    );
    let answer = client.post(&path, body).await.map_err(|e| {
        let hint = format!("`apex run show {}` lists the run's tasks", t.run);
        e.with_not_found_hint(hint)
    })?;
    if t.json {
        out.json(&answer)?;
        return Ok(Exit::Ok);
    }
    let task: Task = shapes::parse(&answer, "task").map_err(|m| client.unexpected(m))?;
    out.line(&format!(
        "{done} task {} of run {} (now {})",
        output::bold(&task.id),
        t.run,
        output::state(task.state.as_str())
    ))?;
    Ok(Exit::Ok)
}

/// Running pages of runs scanned for `apex runs --waiting`, at most.
const MAX_PAGES: usize = 20;

/// Running runs, newest first, with a task waiting for a decision: at most `args.limit`.
pub async fn waiting_runs(
    client: &Client,
    args: &super::runs::ListArgs,
) -> Result<Vec<RunSummary>, CliError> {
    let mut found = Vec::new();
    let mut before = args.before.clone();
    for _ in 0..MAX_PAGES {
        let mut path = "/api/v1/runs?state=running&limit=500".to_owned();
        if let Some(b) = &before {
            path.push_str(&format!("&before={}", encode(b)));
        }
        let body = client.get(&path).await?;
        let page: RunList = shapes::parse(&body, "runs").map_err(|m| client.unexpected(m))?;
        for r in page.runs {
            if r.count("waiting") > 0 {
                found.push(r);
                if found.len() >= args.limit as usize {
                    return Ok(found);
                }
            }
        }
        match page.next {
            Some(next) => before = Some(next),
            None => break,
        }
    }
    Ok(found)
}
