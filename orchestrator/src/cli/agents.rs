//! The agent registry: `apex agents` (every registered agent), `apex agents show`,
//! `apex agents put` (register or replace one from a JSON file) and `apex agents delete`.
//! A run's tasks use a registered agent when the run does not define one by that name.
//!
//! `put` checks only that the file is a JSON object; the server judges the spec (its
//! provider, temperature, limits) and its answer is printed with every problem it lists.

use super::client::{encode, Client, Connection};
use super::error::{CliError, Exit};
use super::output::{self, Cell, Printer, Table};
use super::shapes;
use super::submit::read_input;
use crate::api_types::{Agent, Price};
use crate::api_types::{ErrorBody, ErrorCode};
use serde_json::Value;
use std::path::PathBuf;

/// Arguments of `apex agents`: a listing, unless a subcommand is given.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AgentsArgs {
    #[command(subcommand)]
    pub command: Option<AgentsCommand>,
    #[command(flatten)]
    pub list: ListArgs,
}

/// `apex agents …`.
#[derive(Debug, clap::Subcommand)]
pub enum AgentsCommand {
    /// Show one agent: provider, model, limits, price and system prompt.
    Show(ShowArgs),
    /// Register an agent from a JSON file (`-` reads standard input), or replace the one
    /// registered under NAME.
    Put(PutArgs),
    /// Remove an agent from the registry; runs that define it themselves are unaffected.
    Delete(DeleteArgs),
}

/// Arguments of `apex agents` without a subcommand.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Print the API's answer as JSON: `{"agents": [Agent]}`.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: Connection,
}

/// Arguments of `apex agents show`.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The agent's name (`apex agents` lists them).
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Print the API's answer as JSON: the Agent.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: Connection,
}

/// Arguments of `apex agents put`.
#[derive(Debug, clap::Args)]
pub struct PutArgs {
    /// The name to register the agent under.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// The agent's spec as JSON (`{"provider", "model", ...}`, docs/API.md); `-` reads
    /// standard input.
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: PathBuf,
    /// Print the registered Agent as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: Connection,
}

/// Arguments of `apex agents delete`.
#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// The agent's name.
    #[arg(value_name = "NAME")]
    pub name: String,
    #[command(flatten)]
    pub conn: Connection,
}

const NOT_FOUND_HINT: &str = "check the name; `apex agents` lists registered agents";

/// `apex agents [show | put | delete]`.
pub async fn agents(args: AgentsArgs, out: &mut Printer) -> Result<Exit, CliError> {
    match args.command {
        None => list(&args.list, out).await,
        Some(AgentsCommand::Show(args)) => show(&args, out).await,
        Some(AgentsCommand::Put(args)) => put(args, out).await,
        Some(AgentsCommand::Delete(args)) => delete(&args, out).await,
    }
}

fn agent_path(name: &str) -> String {
    format!("/api/v1/agents/{}", encode(name))
}

/// `apex agents`.
async fn list(args: &ListArgs, out: &mut Printer) -> Result<Exit, CliError> {
    let client = Client::new(&args.conn)?;
    let body = client.get("/api/v1/agents").await?;
    if args.json {
        out.json(&body)?;
        return Ok(Exit::Ok);
    }
    let agents: Vec<Agent> =
        shapes::parse(&body["agents"], "agents").map_err(|m| client.unexpected(m))?;
    if agents.is_empty() {
        out.line(
            "no agents are registered; register one with `apex agents put NAME --file agent.json`",
        )?;
        return Ok(Exit::Ok);
    }
    out.block(&agents_table(&agents))?;
    Ok(Exit::Ok)
}

/// The `apex agents` table.
fn agents_table(agents: &[Agent]) -> String {
    let mut table = Table::new(&[
        "NAME",
        "PROVIDER",
        "MODEL",
        "MAX CONC",
        "PRICE/MTOK IN/OUT",
        "UPDATED",
    ]);
    for a in agents {
        table.row(vec![
            Cell::plain(&a.name),
            Cell::plain(&a.provider),
            Cell::plain(&a.model),
            Cell::plain(a.max_concurrency.map_or("-".into(), |c| c.to_string())),
            Cell::plain(a.price.map_or("-".into(), |p| price(&p))),
            Cell::plain(output::ago(Some(a.updated_at_ms))),
        ]);
    }
    table.render()
}

/// `$3.00/$15.00`: dollars per million input, then output, tokens.
fn price(p: &Price) -> String {
    format!(
        "{}/{}",
        output::cost(p.input_per_mtok),
        output::cost(p.output_per_mtok)
    )
}

/// `apex agents show NAME`.
async fn show(args: &ShowArgs, out: &mut Printer) -> Result<Exit, CliError> {
    let client = Client::new(&args.conn)?;
    let body = client
        .get(&agent_path(&args.name))
        .await
        .map_err(|e| e.with_not_found_hint(NOT_FOUND_HINT))?;
    if args.json {
        out.json(&body)?;
        return Ok(Exit::Ok);
    }
    let agent: Agent = shapes::parse(&body, "agent").map_err(|m| client.unexpected(m))?;
    out.block(&render_agent(&agent))?;
    Ok(Exit::Ok)
}

/// What `apex agents show` prints: every setting, `-` where the worker's default applies.
fn render_agent(a: &Agent) -> String {
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let fields = [
        ("provider", a.provider.clone()),
        ("model", a.model.clone()),
        ("temperature", or_dash(a.temperature.map(|t| t.to_string()))),
        (
            "max output tokens",
            or_dash(a.max_output_tokens.map(|n| n.to_string())),
        ),
        (
            "max concurrency",
            or_dash(a.max_concurrency.map(|n| n.to_string())),
        ),
        (
            "price",
            or_dash(a.price.map(|p| {
                format!(
                    "{} in + {} out per million tokens",
                    output::cost(p.input_per_mtok),
                    output::cost(p.output_per_mtok)
                )
            })),
        ),
        ("created", output::timestamp(Some(a.created_at_ms))),
        (
            "updated",
            format!(
                "{} ({})",
                output::timestamp(Some(a.updated_at_ms)),
                output::ago(Some(a.updated_at_ms))
            ),
        ),
    ];
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut text = format!("agent {}\n", output::bold(&a.name));
    for (key, value) in fields {
        text.push_str(&format!("  {key:width$}  {value}\n"));
    }
    match a.system_prompt.as_deref() {
        Some(prompt) if !prompt.is_empty() => {
            text.push_str("\nsystem prompt:\n");
            for line in prompt.lines() {
                text.push_str(&format!("  {line}\n"));
            }
        }
        _ => text.push_str(&format!("\n{}\n", output::dim("no system prompt"))),
    }
    text
}

/// `apex agents put NAME --file FILE`.
async fn put(args: PutArgs, out: &mut Printer) -> Result<Exit, CliError> {
    let (path, bytes) = read_input(&args.file)?;
    check_is_object(&path, &bytes)?;
    let client = Client::new(&args.conn)?;
    let (status, body) = client
        .put(&agent_path(&args.name), bytes)
        .await
        .map_err(|e| blame(e, &path))?;
    if args.json {
        out.json(&body)?;
        return Ok(Exit::Ok);
    }
    let agent: Agent = shapes::parse(&body, "agent").map_err(|m| client.unexpected(m))?;
    let verb = if status == 201 { "created" } else { "replaced" };
    out.line(&format!(
        "{verb} agent {} ({} {})",
        output::bold(&agent.name),
        agent.provider,
        agent.model
    ))?;
    Ok(Exit::Ok)
}

/// Stops a file that is not a JSON object before it is sent; the server judges the rest.
fn check_is_object(path: &str, bytes: &[u8]) -> Result<(), CliError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| CliError::InvalidJson {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    if value.is_object() {
        return Ok(());
    }
    Err(CliError::InvalidAgent {
        path: path.to_owned(),
        error: ErrorBody {
            code: ErrorCode::InvalidJson,
            message: r#"an agent is a JSON object such as {"provider": "openai", "model": "gpt-4o-mini"}"#
                .into(),
            details: Vec::new(),
            required_scope: None,
            run_id: None,
        },
    })
}

/// Names the file in the server's rejection of it (400 or 422), with the server's words.
fn blame(e: CliError, path: &str) -> CliError {
    let path = path.to_owned();
    match e {
        CliError::InvalidDag { error, .. } => CliError::InvalidAgent { path, error },
        CliError::BadRequest(message) => CliError::InvalidAgent {
            path,
            error: ErrorBody {
                code: ErrorCode::BadRequest,
                message,
                details: Vec::new(),
                required_scope: None,
                run_id: None,
            },
        },
        other => other,
    }
}

/// `apex agents delete NAME`.
async fn delete(args: &DeleteArgs, out: &mut Printer) -> Result<Exit, CliError> {
    let client = Client::new(&args.conn)?;
    client
        .delete(&agent_path(&args.name))
        .await
        .map_err(|e| e.with_not_found_hint(NOT_FOUND_HINT))?;
    out.line(&format!("deleted agent {}", output::bold(&args.name)))?;
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plain(text: &str) -> String {
        anstream::adapter::strip_str(text).to_string()
    }

    fn agent(v: Value) -> Agent {
        serde_json::from_value(v).unwrap()
    }

    fn registry() -> Vec<Agent> {
        vec![
            agent(json!({
                "name": "researcher", "provider": "openai", "model": "gpt-4o-mini",
                "max_concurrency": 8, "price": {"input_per_mtok": 0.15, "output_per_mtok": 0.6},
                "system_prompt": "You dig.", "created_at_ms": 1, "updated_at_ms": output::now_ms() - 7_200_000,
            })),
            agent(
                json!({"name": "w", "provider": "mock", "model": "echo", "created_at_ms": 1, "updated_at_ms": output::now_ms() - 3 * 86_400_000}),
            ),
        ]
    }

    #[test]
    fn the_table_shows_limits_and_prices_and_dashes_what_is_unset() {
        let text = plain(&agents_table(&registry()));
        assert_eq!(
            text,
            "\
NAME        PROVIDER  MODEL        MAX CONC  PRICE/MTOK IN/OUT  UPDATED
researcher  openai    gpt-4o-mini  8         $0.15/$0.60        2h ago
w           mock      echo         -         -                  3d ago
"
        );
    }

    #[test]
    fn show_lists_every_setting_and_the_whole_system_prompt() {
        let mut a = registry().remove(0);
        a.system_prompt = Some("You dig.\nCite sources.".into());
        a.temperature = Some(0.2);
        let text = plain(&render_agent(&a));
        assert!(text.starts_with("agent researcher\n"), "{text}");
        assert!(text.contains("\n  temperature        0.2\n"), "{text}");
        assert!(text.contains("\n  max output tokens  -\n"), "{text}");
        assert!(!text.contains("base url"), "{text}");
        assert!(
            text.contains("\n  price              $0.15 in + $0.60 out per million tokens\n"),
            "{text}"
        );
        assert!(
            text.ends_with("system prompt:\n  You dig.\n  Cite sources.\n"),
            "{text}"
        );
        a.system_prompt = None;
        assert!(plain(&render_agent(&a)).ends_with("\nno system prompt\n"));
    }

    #[test]
    fn a_rejected_agent_names_the_file_and_lists_the_servers_problems() {
        let body = json!({"code": "invalid_agent", "message": "agent \"x\" has 2 problems", "details": [
            {"code": "invalid_agent", "message": "temperature outside 0..2"},
            {"code": "invalid_agent", "message": "max_concurrency 0"},
        ]});
        let error: ErrorBody = serde_json::from_value(body).unwrap();
        let e = blame(
            CliError::InvalidDag {
                path: "the submitted file".into(),
                error,
            },
            "agent.json",
        );
        assert_eq!(e.exit(), Exit::BadInput);
        assert_eq!(
            e.to_string(),
            "agent.json is not a valid agent: agent \"x\" has 2 problems; fix those listed below and try again"
        );
        assert_eq!(
            e.detail_lines(),
            [
                "  - [invalid_agent] temperature outside 0..2",
                "  - [invalid_agent] max_concurrency 0"
            ]
        );
        let e = blame(CliError::BadRequest("unknown field `colour`".into()), "-");
        assert_eq!(e.exit(), Exit::BadInput);
        assert!(e.to_string().contains("unknown field `colour`"), "{e}");
    }

    #[test]
    fn a_file_that_is_not_a_json_object_is_stopped_before_it_is_sent() {
        assert!(check_is_object("a.json", br#"{"provider": "mock"}"#).is_ok());
        let e = check_is_object("a.json", b"{").unwrap_err();
        assert!(matches!(e, CliError::InvalidJson { .. }), "{e}");
        let e = check_is_object("a.json", b"[1]").unwrap_err();
        assert_eq!(e.exit(), Exit::BadInput);
    }
}
