//! `apex schedules`: create, list, pause, resume and delete schedules of templates.

use super::client::{encode, Client, Connection};
use super::error::{CliError, Exit};
use super::output::{self, Cell, Printer, Table};
use super::shapes;
use super::submit::read_input;
use crate::api_types::{Schedule, ScheduleList};
use std::path::PathBuf;

/// `apex schedules …`.
#[derive(Debug, clap::Subcommand)]
pub enum SchedulesCommand {
    /// Create or replace schedule NAME from a file
    /// (`{"template", "params", "cron" | "every_s", "timezone", "overlap", "catch_up"}`).
    Put(PutArgs),
    /// List schedules with their next fire time.
    List(ListArgs),
    /// Stop a schedule's ticks.
    Pause(NameArgs),
    /// Start a paused schedule again (missed ticks do not fire).
    Resume(NameArgs),
    /// Delete a schedule.
    Delete(NameArgs),
}

/// Arguments of `apex schedules put`.
#[derive(Debug, clap::Args)]
pub struct PutArgs {
    #[arg(value_name = "NAME")]
    pub name: String,
    /// The schedule as JSON; `-` reads standard input.
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: PathBuf,
    #[command(flatten)]
    pub conn: Connection,
}

/// Arguments of `apex schedules list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Print the API's answer as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: Connection,
}

/// A schedule's name.
#[derive(Debug, clap::Args)]
pub struct NameArgs {
    #[arg(value_name = "NAME")]
    pub name: String,
    #[command(flatten)]
    pub conn: Connection,
}

fn path(name: &str) -> String {
    format!("/api/v1/schedules/{}", encode(name))
}

/// `apex schedules put | list | pause | resume | delete`.
pub async fn schedules(command: SchedulesCommand, out: &mut Printer) -> Result<Exit, CliError> {
    match command {
        SchedulesCommand::Put(args) => {
            let (_, bytes) = read_input(&args.file)?;
            let client = Client::new(&args.conn)?;
            let (status, body) = client.put(&path(&args.name), bytes).await?;
            let stored: Schedule =
                shapes::parse(&body, "schedule").map_err(|m| client.unexpected(m))?;
            let verb = if status == 201 { "created" } else { "replaced" };
            out.line(&format!(
                "{verb} schedule {}; next fire {}",
                output::bold(&args.name),
                output::timestamp(stored.next_fire_ms)
            ))?;
        }
        SchedulesCommand::List(args) => {
            let client = Client::new(&args.conn)?;
            let body = client.get("/api/v1/schedules").await?;
            if args.json {
                out.json(&body)?;
                return Ok(Exit::Ok);
            }
            let mut table = Table::new(&["NAME", "TEMPLATE", "WHEN", "STATE", "NEXT FIRE"]);
            let list: ScheduleList =
                shapes::parse(&body, "schedules").map_err(|m| client.unexpected(m))?;
            for s in list.schedules {
                let when = match (&s.cron, s.every_s) {
                    (Some(c), _) => format!("{c} {}", s.timezone.as_deref().unwrap_or("UTC")),
                    (None, Some(n)) => format!("every {n} s"),
                    _ => String::new(),
                };
                table.row(vec![
                    Cell::plain(s.name.as_str()),
                    Cell::plain(s.template.as_str()),
                    Cell::plain(when),
                    Cell::plain(if s.paused { "paused" } else { "active" }),
                    Cell::plain(output::timestamp(s.next_fire_ms)),
                ]);
            }
            out.block(&table.render())?;
        }
        SchedulesCommand::Pause(args) => act(&args, "pause", "paused", out).await?,
        SchedulesCommand::Resume(args) => act(&args, "resume", "resumed", out).await?,
        SchedulesCommand::Delete(args) => {
            let client = Client::new(&args.conn)?;
            client.delete(&path(&args.name)).await?;
            out.line(&format!("deleted schedule {}", output::bold(&args.name)))?;
        }
    }
    Ok(Exit::Ok)
}

async fn act(args: &NameArgs, verb: &str, done: &str, out: &mut Printer) -> Result<(), CliError> {
    let client = Client::new(&args.conn)?;
    client
        .post(&format!("{}/{verb}", path(&args.name)), None)
        .await?;
    out.line(&format!("{done} schedule {}", output::bold(&args.name)))
}
