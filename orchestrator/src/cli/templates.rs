//! `apex templates`: store versions of a template, list them, start runs of one.

use super::client::{encode, Client, Connection};
use super::error::{CliError, Exit};
use super::output::{self, Cell, Printer, Table};
use super::shapes;
use super::submit::read_input;
use crate::api_types::{RunSummary, Template, TemplateList, TemplateRunRequest};
use serde_json::{Map, Value};
use std::path::PathBuf;

/// `apex templates …`.
#[derive(Debug, clap::Subcommand)]
pub enum TemplatesCommand {
    /// Store a template file as the next version of NAME (validated as a submission).
    Put(PutArgs),
    /// List templates with their versions.
    List(ListArgs),
    /// Start a run of a template and print the run id.
    Run(RunArgs),
}

/// Arguments of `apex templates put`.
#[derive(Debug, clap::Args)]
pub struct PutArgs {
    #[arg(value_name = "NAME")]
    pub name: String,
    /// A run's DAG plus `"params"`; `-` reads standard input.
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: PathBuf,
    #[command(flatten)]
    pub conn: Connection,
}

/// Arguments of `apex templates list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Print the API's answer as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: Connection,
}

/// Arguments of `apex templates run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[arg(value_name = "NAME")]
    pub name: String,
    /// A parameter, `KEY=VALUE`; VALUE is read as JSON when it parses, else as text.
    #[arg(long = "param", short = 'p', value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Run this version rather than the latest.
    #[arg(long)]
    pub version: Option<u32>,
    /// Sent as `Idempotency-Key` (a fresh random one by default).
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    /// Print the run summary as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: Connection,
}

/// `apex templates put | list | run`.
pub async fn templates(command: TemplatesCommand, out: &mut Printer) -> Result<Exit, CliError> {
    match command {
        TemplatesCommand::Put(args) => {
            let (_, bytes) = read_input(&args.file)?;
            let client = Client::new(&args.conn)?;
            let path = format!("/api/v1/templates/{}", encode(&args.name));
            let (_, body) = client.put(&path, bytes).await?;
            let stored: Template =
                shapes::parse(&body, "template").map_err(|m| client.unexpected(m))?;
            out.line(&format!(
                "stored template {} version {}",
                output::bold(&args.name),
                stored.version
            ))?;
        }
        TemplatesCommand::List(args) => {
            let client = Client::new(&args.conn)?;
            let body = client.get("/api/v1/templates").await?;
            if args.json {
                out.json(&body)?;
                return Ok(Exit::Ok);
            }
            let mut table = Table::new(&["NAME", "LATEST", "VERSIONS", "PARAMS", "STORED"]);
            let list: TemplateList =
                shapes::parse(&body, "templates").map_err(|m| client.unexpected(m))?;
            for t in list.templates {
                let params: Vec<&str> = t.params.keys().map(String::as_str).collect();
                table.row(vec![
                    Cell::plain(t.name.as_str()),
                    Cell::plain(t.version.to_string()),
                    Cell::plain(t.versions.len().to_string()),
                    Cell::plain(params.join(",")),
                    Cell::plain(output::ago(Some(t.created_at_ms))),
                ]);
            }
            out.block(&table.render())?;
        }
        TemplatesCommand::Run(args) => {
            let mut params = Map::new();
            for p in &args.params {
                let (k, v) = parse_param(p)?;
                params.insert(k, v);
            }
            let request = TemplateRunRequest {
                params,
                version: args.version,
            };
            let client = Client::new(&args.conn)?;
            let key = args
                .idempotency_key
                .clone()
                .unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string());
            let path = format!("/api/v1/templates/{}/runs", encode(&args.name));
            let body = client
                .post_idempotent(
                    &path,
                    serde_json::to_vec(&request).unwrap_or_default(),
                    &key,
                )
                .await?;
            if args.json {
                out.json(&body)?;
            } else {
                let run: RunSummary =
                    shapes::parse(&body, "run").map_err(|m| client.unexpected(m))?;
                out.line(&run.id)?;
            }
        }
    }
    Ok(Exit::Ok)
}

/// `KEY=VALUE`, VALUE as JSON when it parses (`n=3`, `tags=["a"]`), else as text.
pub fn parse_param(p: &str) -> Result<(String, Value), CliError> {
    let (k, v) = p
        .split_once('=')
        .ok_or_else(|| CliError::BadRequest(format!("--param {p:?}: write KEY=VALUE")))?;
    let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_owned()));
    Ok((k.to_owned(), value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn params_are_json_when_they_parse_and_text_otherwise() {
        assert_eq!(parse_param("n=3").unwrap(), ("n".into(), json!(3)));
        assert_eq!(
            parse_param("t=tides").unwrap(),
            ("t".into(), json!("tides"))
        );
        assert_eq!(parse_param("l=[1]").unwrap(), ("l".into(), json!([1])));
        assert!(parse_param("nothing").is_err());
    }
}
