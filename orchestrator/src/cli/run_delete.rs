//! `apex runs delete ID`: deletes a finished run now, with its tasks and events.

use super::client::{encode, Client, Connection};
use super::error::{CliError, Exit};
use super::output::Printer;

/// `apex runs …` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum RunsCommand {
    /// Delete a finished run with its tasks and events (a running one must be
    /// cancelled first). Needs an admin token.
    Delete(DeleteArgs),
}

/// Arguments of `apex runs delete`.
#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    #[arg(value_name = "RUN_ID")]
    pub id: String,
    #[command(flatten)]
    pub conn: Connection,
}

/// Runs an `apex runs` subcommand.
pub async fn runs(command: RunsCommand, out: &mut Printer) -> Result<Exit, CliError> {
    match command {
        RunsCommand::Delete(args) => {
            let client = Client::new(&args.conn)?;
            client
                .delete(&format!("/api/v1/runs/{}", encode(&args.id)))
                .await?;
            out.line(&format!("deleted run {}", args.id))?;
            Ok(Exit::Ok)
        }
    }
}
