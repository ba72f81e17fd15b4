//! `apex rerun RUN --from TASK`: a new run from chosen tasks of a finished run, reusing
//! the outputs of the rest (docs/API.md, "Re-running from tasks").

use super::client::{encode, Client, Connection};
use super::error::{CliError, Exit};
use super::output::{self, Printer};
use super::shapes::{self, RunSummary};
use super::watch::{self, WatchOptions};
use serde_json::{json, Map, Value};

/// Arguments of `apex rerun`.
#[derive(Debug, clap::Args)]
pub struct RerunArgs {
    /// The finished run to re-run from.
    #[arg(value_name = "RUN_ID")]
    pub run: String,
    /// A task to run again (repeat for more); everything downstream runs again too.
    #[arg(long = "from", value_name = "TASK", required = true)]
    pub from: Vec<String>,
    /// Change one key of a re-run task's input: `TASK.input.KEY=VALUE` (VALUE is JSON,
    /// or else taken as a string).
    #[arg(long = "set", value_name = "TASK.input.KEY=VALUE")]
    pub set: Vec<String>,
    /// Change one field of an agent for the new run: `NAME.KEY=VALUE` (e.g.
    /// `critic.model=gpt-4o`).
    #[arg(long = "agent-set", value_name = "NAME.KEY=VALUE")]
    pub agent_set: Vec<String>,
    /// Follow the new run live until it finishes; the exit code then tells how it ended.
    #[arg(long)]
    pub watch: bool,
    /// Print the new run's summary as JSON (with --watch: one JSON event per line).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub watch_options: WatchOptions,
    #[command(flatten)]
    pub conn: Connection,
}

/// A `--set` split into task, input key and value.
#[derive(Debug, PartialEq)]
struct InputSet {
    task: String,
    key: String,
    value: Value,
}

/// `VALUE` as JSON when it parses, else as a string (`--set t.input.n=3` is a number,
/// `--set t.input.topic=tides` a string).
fn value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| json!(text))
}

/// Parses `TASK.input.KEY=VALUE`; a task id may itself hold dots (`plan.step1`).
fn parse_set(arg: &str) -> Result<InputSet, CliError> {
    let bad = || {
        CliError::BadRequest(format!(
            "--set {arg:?}: write TASK.input.KEY=VALUE, e.g. --set critique.input.prompt=\"Be harsh\""
        ))
    };
    let (path, v) = arg.split_once('=').ok_or_else(bad)?;
    let (task, key) = path.rsplit_once(".input.").ok_or_else(bad)?;
    if task.is_empty() || key.is_empty() {
        return Err(bad());
    }
    Ok(InputSet {
        task: task.to_owned(),
        key: key.to_owned(),
        value: value(v),
    })
}

/// Parses `NAME.KEY=VALUE` into the agent's name, field and value.
fn parse_agent_set(arg: &str) -> Result<(String, String, Value), CliError> {
    let bad = || {
        CliError::BadRequest(format!(
            "--agent-set {arg:?}: write NAME.KEY=VALUE, e.g. --agent-set critic.model=gpt-4o"
        ))
    };
    let (path, v) = arg.split_once('=').ok_or_else(bad)?;
    let (name, key) = path.split_once('.').ok_or_else(bad)?;
    if name.is_empty() || key.is_empty() {
        return Err(bad());
    }
    Ok((name.to_owned(), key.to_owned(), value(v)))
}

/// `apex rerun RUN --from TASK [--set ...] [--agent-set ...] [--watch]`.
pub async fn rerun(args: &RerunArgs, out: &mut Printer) -> Result<Exit, CliError> {
    let sets = args
        .set
        .iter()
        .map(|s| parse_set(s))
        .collect::<Result<Vec<_>, _>>()?;
    let mut agents = Map::new();
    for a in &args.agent_set {
        let (name, key, v) = parse_agent_set(a)?;
        let entry = agents.entry(name).or_insert_with(|| json!({}));
        entry[key] = v;
    }
    let client = Client::new(&args.conn)?;
    // An override replaces a task's whole input: start from the stored one.
    let mut tasks = Map::new();
    for s in sets {
        if !tasks.contains_key(&s.task) {
            let path = format!(
                "/api/v1/runs/{}/tasks/{}",
                encode(&args.run),
                encode(&s.task)
            );
            let task = client.get(&path).await.map_err(|e| {
                e.with_not_found_hint(format!(
                    "`apex run show {}` lists the run's tasks",
                    args.run
                ))
            })?;
            let input = match task["input"].clone() {
                Value::Object(m) => Value::Object(m),
                _ => json!({}),
            };
            tasks.insert(s.task.clone(), json!({"input": input}));
        }
        tasks[&s.task]["input"][&s.key] = s.value;
    }
    let body = json!({"from": args.from, "overrides": {"agents": agents, "tasks": tasks}});
    let path = format!("/api/v1/runs/{}/rerun", encode(&args.run));
    let answer = client
        .post(&path, Some(body.to_string().into_bytes()))
        .await?;
    let summary: RunSummary = shapes::parse(&answer, "run").map_err(|m| client.unexpected(m))?;
    if args.watch {
        if !args.json {
            out.line(&format!(
                "re-running run {} from {} as run {}",
                args.run,
                args.from.join(", "),
                output::bold(&summary.id)
            ))?;
        }
        return watch::watch(&client, &summary.id, &args.watch_options, args.json, out).await;
    }
    if args.json {
        out.json(&answer)?;
    } else {
        // Only the id on standard output, so `ID=$(apex rerun ...)` works.
        out.line(&summary.id)?;
    }
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_splits_at_the_input_key_and_reads_json_values() {
        assert_eq!(
            parse_set("plan.step1.input.n=3").unwrap(),
            InputSet {
                task: "plan.step1".into(),
                key: "n".into(),
                value: json!(3)
            }
        );
        assert_eq!(
            parse_set("c.input.topic=tides").unwrap().value,
            json!("tides")
        );
        assert!(parse_set("c.prompt=x").is_err());
        assert!(parse_set("c.input.x").is_err());
        assert_eq!(
            parse_agent_set("critic.model=gpt-4o").unwrap(),
            ("critic".into(), "model".into(), json!("gpt-4o"))
        );
        assert!(parse_agent_set("critic=1").is_err());
    }
}
