//! `apex approve`, `apex reject` and `apex task cancel`: a person's decision about one
//! task of a running run (docs/API.md, "People in the loop").

use super::client::{encode, Client, Connection};
use super::error::{CliError, Exit};
use super::output::{self, Printer};
use super::shapes::{self, Task};
use serde_json::{json, Map, Value};

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
    let mut body = Map::new();
    if let Some(c) = &args.comment {
        body.insert("comment".into(), json!(c));
    }
    if let Some(o) = &args.output {
        let v: Value = serde_json::from_str(o).map_err(|e| CliError::InvalidJson {
            path: "--output".into(),
            reason: e.to_string(),
        })?;
        body.insert("output".into(), v);
    }
    let mut raise = Map::new();
    if let Some(c) = args.raise_cost {
        raise.insert("max_cost_usd".into(), json!(c));
    }
    if let Some(t) = args.raise_tokens {
        raise.insert("max_tokens".into(), json!(t));
    }
    let done = if raise.is_empty() {
        "approved"
    } else {
        body.insert("raise".into(), Value::Object(raise));
        "raised the budget of"
    };
    decide(&args.task, "approve", Value::Object(body), done, out).await
}

/// `apex reject RUN TASK`.
pub async fn reject(args: &RejectArgs, out: &mut Printer) -> Result<Exit, CliError> {
    let mut body = Map::new();
    if let Some(c) = &args.comment {
        body.insert("comment".into(), json!(c));
    }
    decide(&args.task, "reject", Value::Object(body), "rejected", out).await
}

/// `apex task cancel RUN TASK`.
pub async fn cancel(args: &TaskRef, out: &mut Printer) -> Result<Exit, CliError> {
    decide(args, "cancel", Value::Null, "cancelled", out).await
}

async fn decide(
    t: &TaskRef,
    action: &str,
    body: Value,
    done: &str,
    out: &mut Printer,
) -> Result<Exit, CliError> {
    let client = Client::new(&t.conn)?;
    let path = format!(
        "/api/v1/runs/{}/tasks/{}/{action}",
        encode(&t.run),
        encode(&t.task)
    );
    let body = (!body.is_null()).then(|| body.to_string().into_bytes());
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
) -> Result<Vec<Value>, CliError> {
    let mut found = Vec::new();
    let mut before = args.before.clone();
    for _ in 0..MAX_PAGES {
        let mut path = "/api/v1/runs?state=running&limit=500".to_owned();
        if let Some(b) = &before {
            path.push_str(&format!("&before={}", encode(b)));
        }
        let body = client.get(&path).await?;
        let runs = body["runs"].as_array().cloned().unwrap_or_default();
        for r in runs {
            if r["counts"]["waiting"].as_u64().unwrap_or(0) > 0 {
                found.push(r);
                if found.len() >= args.limit as usize {
                    return Ok(found);
                }
            }
        }
        match body["next"].as_str() {
            Some(next) => before = Some(next.to_owned()),
            None => break,
        }
    }
    Ok(found)
}
