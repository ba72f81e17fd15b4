//! `apex task show`: everything about one task, to answer "what happened to it": its
//! input, what its dependencies handed it, its output or error and traceback, every
//! attempt with timings and worker, and what it logged; with `--follow`, its answer as
//! it is streamed ([`super::follow`]).

use super::client::{encode, Client, Connection};
use super::error::{CliError, Exit};
use super::output::{self, Cell, Printer, Table};
use super::shapes::{self, Task, TaskDetail, UsageExt};
use serde_json::Value;

/// `apex task …`.
#[derive(Debug, clap::Subcommand)]
pub enum TaskCommand {
    /// Show a task: input, upstream outputs, output, error, attempts and logs.
    Show(TaskShowArgs),
    /// Cancel one task of a running run; the rest of the run goes on.
    Cancel(super::approve::TaskRef),
}

/// Arguments of `apex task show`.
#[derive(Debug, clap::Args)]
pub struct TaskShowArgs {
    /// The run's id.
    #[arg(value_name = "RUN_ID")]
    pub run: String,
    /// The task's id within the run (`apex run show RUN_ID` lists them).
    #[arg(value_name = "TASK_ID")]
    pub task: String,
    /// Also print the task's log lines.
    #[arg(long)]
    pub logs: bool,
    /// Print the API's TaskDetail as JSON (it always includes the logs).
    #[arg(long)]
    pub json: bool,
    /// Print the task's answer as its model streams it, and exit when the task ends
    /// (0 if it succeeded, 1 if not).
    #[arg(long, conflicts_with_all = ["json", "logs"])]
    pub follow: bool,
    #[command(flatten)]
    pub conn: Connection,
}

/// `apex task show RUN TASK`.
pub async fn show(args: &TaskShowArgs, out: &mut Printer) -> Result<Exit, CliError> {
    let client = Client::new(&args.conn)?;
    if args.follow {
        return super::follow::follow(&client, &args.run, &args.task, out).await;
    }
    let path = format!(
        "/api/v1/runs/{}/tasks/{}",
        encode(&args.run),
        encode(&args.task)
    );
    let body = client.get(&path).await.map_err(|e| {
        let hint = match &e {
            CliError::NotFound { message, .. } if message.starts_with("task") => {
                format!("`apex run show {}` lists the run's tasks", args.run)
            }
            _ => "check the id; `apex runs` lists recent runs".into(),
        };
        e.with_not_found_hint(hint)
    })?;
    if args.json {
        out.json(&body)?;
        return Ok(Exit::Ok);
    }
    let detail: TaskDetail = shapes::parse(&body, "task").map_err(|m| client.unexpected(m))?;
    let mut text = header(&detail);
    text.push_str(&data(&detail));
    text.push_str(&attempts(&detail));
    text.push_str(&logs(&detail, args.logs));
    out.block(&text)?;
    Ok(Exit::Ok)
}

fn header(d: &TaskDetail) -> String {
    let t = &d.task;
    let timeout = t
        .timeout_s
        .map_or("none".into(), |s| output::duration((s * 1000.0) as i64));
    let mut text = format!(
        "task {} of run {}  {}\n  handler {} · queue {} · trigger {} · priority {} · retries {} · timeout {}\n",
        output::bold(&t.id),
        d.run_id,
        output::state(t.state.as_str()),
        t.handler,
        t.queue,
        t.trigger.as_str(),
        t.priority,
        t.retries,
        timeout,
    );
    text.push_str(&format!(
        "  attempt {} of {} · worker {} · queued {} · started {} · took {}\n",
        t.attempt,
        t.retries + 1,
        t.worker_id.as_deref().unwrap_or("-"),
        output::timestamp(t.queued_at_ms),
        output::timestamp(t.started_at_ms),
        output::span(t.started_at_ms, t.finished_at_ms),
    ));
    text.push_str(&swarm_lines(t));
    if !t.depends_on.is_empty() {
        text.push_str(&format!("  depends on: {}\n", t.depends_on.join(", ")));
    }
    if let Some(p) = t.progress {
        let msg = t.progress_message.as_deref().unwrap_or("");
        text.push_str(&format!("  progress: {:.0}% {msg}\n", p * 100.0));
    }
    text
}

/// Agent, parent and usage: one line for who ran it and who spawned it, one for usage;
/// nothing for a plain task.
pub fn swarm_lines(t: &Task) -> String {
    let mut text = String::new();
    let mut who = Vec::new();
    if let Some(agent) = &t.agent {
        who.push(format!("agent {}", output::bold(agent)));
    }
    if let Some(parent) = &t.parent {
        who.push(format!("spawned by {parent}"));
    }
    if !who.is_empty() {
        text.push_str(&format!("  {}\n", who.join(" · ")));
    }
    if !t.usage.is_zero() {
        text.push_str(&format!("  usage: {}\n", output::usage_long(&t.usage)));
    }
    text
}

fn data(d: &TaskDetail) -> String {
    let t = &d.task;
    let mut text = format!(
        "\n{}\n{}\n",
        output::bold("input:"),
        output::indented_json(&t.input, "  ")
    );
    if !d.upstream.is_empty() {
        text.push_str(&format!("{}\n", output::bold("upstream outputs:")));
        for (dep, value) in &d.upstream {
            text.push_str(&format!(
                "  {dep}:\n{}\n",
                output::indented_json(value, "    ")
            ));
        }
    }
    text.push_str(&format!(
        "{}\n{}\n",
        output::bold("output:"),
        output::indented_json(t.output.as_ref().unwrap_or(&Value::Null), "  ")
    ));
    if let Some(e) = &t.error {
        let failed = output::state_style("failed");
        let kind = &e.kind;
        text.push_str(&format!(
            "{} {}\n",
            output::paint(failed, &format!("error ({kind}):")),
            output::paint(failed, &e.one_line()),
        ));
        if let Some(tb) = e.traceback.as_deref().filter(|s| !s.is_empty()) {
            text.push_str(&format!("{}\n", output::bold("traceback:")));
            for line in tb.lines() {
                text.push_str(&format!("  {line}\n"));
            }
        }
    }
    text
}

fn attempts(d: &TaskDetail) -> String {
    if d.attempts.is_empty() {
        return format!("\n{}\n", output::dim("no attempts yet"));
    }
    let mut table = Table::new(&[
        "#", "OUTCOME", "WORKER", "QUEUED", "STARTED", "FINISHED", "TOOK", "ERROR",
    ]);
    for a in &d.attempts {
        let outcome = a.outcome.as_deref().unwrap_or("running");
        table.row(vec![
            Cell::plain(a.attempt.to_string()),
            Cell::state(outcome),
            Cell::plain(a.worker_id.as_deref().unwrap_or("-")),
            Cell::plain(output::time_of_day(a.queued_at_ms)),
            Cell::plain(output::time_of_day(a.started_at_ms)),
            Cell::plain(output::time_of_day(a.finished_at_ms)),
            Cell::plain(output::span(a.started_at_ms, a.finished_at_ms)),
            Cell::plain(a.error.as_ref().map_or(String::new(), |e| e.one_line())),
        ]);
    }
    let body: String = table.render().lines().map(|l| format!("  {l}\n")).collect();
    format!("\n{} (times UTC)\n{body}", output::bold("attempts:"))
}

fn logs(d: &TaskDetail, show: bool) -> String {
    let n = d.logs.len();
    if n == 0 {
        return format!("\n{}\n", output::dim("no log lines"));
    }
    if !show {
        return format!(
            "\n{}\n",
            output::dim(&format!("{n} log lines (show them with --logs)"))
        );
    }
    let mut text = format!("\n{}\n", output::bold("logs:"));
    for l in &d.logs {
        let level = l.level.as_deref().unwrap_or("info");
        let style = match level {
            "error" | "critical" => output::state_style("failed"),
            "warning" | "warn" => output::state_style("cancelled"),
            _ => anstyle::Style::new(),
        };
        text.push_str(&format!(
            "  {}  #{}  {}  {}\n",
            output::time_of_day(Some(l.at_ms)),
            l.attempt,
            output::paint(style, &format!("{level:<7}")),
            l.message.as_deref().unwrap_or(""),
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lines_of(task: serde_json::Value) -> String {
        let t: Task = super::super::shapes::fixtures::task(task);
        anstream::adapter::strip_str(&swarm_lines(&t)).to_string()
    }

    #[test]
    fn an_agent_task_says_who_ran_it_who_spawned_it_and_what_it_cost() {
        let text = lines_of(json!({
            "id": "plan.0", "agent": "researcher", "parent": "plan",
            "usage": {"input_tokens": 120, "output_tokens": 40, "cost_usd": 0.000042}
        }));
        assert_eq!(
            text,
            "  agent researcher · spawned by plan\n  usage: 120 in + 40 out tokens · $0.000042\n"
        );
    }

    #[test]
    fn a_plain_task_has_no_swarm_lines() {
        assert_eq!(lines_of(json!({"id": "a"})), "");
        let zero = json!({"input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0});
        assert_eq!(lines_of(json!({"id": "a", "usage": zero})), "");
    }
}
