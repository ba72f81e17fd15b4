//! `apex hooks`: create and list webhooks that start templates.

use super::client::{encode, Client, Connection};
use super::error::{CliError, Exit};
use super::output::{self, Cell, Printer, Table};
use super::shapes;
use crate::api_types::{HookList, HookSpec};

/// `apex hooks …`.
#[derive(Debug, clap::Subcommand)]
pub enum HooksCommand {
    /// Create or replace webhook NAME, starting TEMPLATE when a delivery signed with
    /// the secret arrives at `POST /api/v1/hooks/NAME`.
    Put(PutArgs),
    /// List webhooks (never their secrets).
    List(ListArgs),
}

/// Arguments of `apex hooks put`.
#[derive(Debug, clap::Args)]
pub struct PutArgs {
    #[arg(value_name = "NAME")]
    pub name: String,
    /// The template a delivery starts.
    #[arg(long)]
    pub template: String,
    /// The shared secret deliveries are signed with (at least 16 characters).
    #[arg(long, env = "APEX_HOOK_SECRET", hide_env_values = true)]
    pub secret: String,
    #[command(flatten)]
    pub conn: Connection,
}

/// Arguments of `apex hooks list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Print the API's answer as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: Connection,
}

/// `apex hooks put | list`.
pub async fn hooks(command: HooksCommand, out: &mut Printer) -> Result<Exit, CliError> {
    match command {
        HooksCommand::Put(args) => {
            let client = Client::new(&args.conn)?;
            let spec = HookSpec {
                template: args.template.clone(),
                secret: args.secret.clone(),
            };
            let path = format!("/api/v1/hooks/{}", encode(&args.name));
            let body = serde_json::to_vec(&spec).unwrap_or_default();
            let (status, _) = client.put(&path, body).await?;
            let verb = if status == 201 { "created" } else { "replaced" };
            out.line(&format!(
                "{verb} hook {}: deliveries to {path} start template {}",
                output::bold(&args.name),
                args.template
            ))?;
        }
        HooksCommand::List(args) => {
            let client = Client::new(&args.conn)?;
            let body = client.get("/api/v1/hooks").await?;
            if args.json {
                out.json(&body)?;
                return Ok(Exit::Ok);
            }
            let mut table = Table::new(&["NAME", "TEMPLATE", "UPDATED"]);
            let list: HookList = shapes::parse(&body, "hooks").map_err(|m| client.unexpected(m))?;
            for h in list.hooks {
                table.row(vec![
                    Cell::plain(h.name.as_str()),
                    Cell::plain(h.template.as_str()),
                    Cell::plain(output::ago(Some(h.updated_at_ms))),
                ]);
            }
            out.block(&table.render())?;
        }
    }
    Ok(Exit::Ok)
}
