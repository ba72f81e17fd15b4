//! The fleet: `apex workers` (who is serving which queues, how busy) and `apex queues`
//! (how much work waits on each queue, and how much is in flight).

use super::client::{Client, Connection};
use super::error::{CliError, Exit};
use super::output::{self, Cell, Printer, Table};
use super::shapes;
use crate::api_types::{Queue, Worker};

/// Arguments of `apex workers` and `apex queues`.
#[derive(Debug, clap::Args)]
pub struct FleetArgs {
    /// Print the API's answer as JSON (`{"workers": [...]}` or `{"queues": [...]}`).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: Connection,
}

/// `apex workers`.
pub async fn workers(args: &FleetArgs, out: &mut Printer) -> Result<Exit, CliError> {
    let client = Client::new(&args.conn)?;
    let body = client.get("/api/v1/workers").await?;
    if args.json {
        out.json(&body)?;
        return Ok(Exit::Ok);
    }
    let workers: Vec<Worker> =
        shapes::parse(&body["workers"], "workers").map_err(|m| client.unexpected(m))?;
    if workers.is_empty() {
        out.line("no workers have registered; start one with `apex-worker --queue default`")?;
        return Ok(Exit::Ok);
    }
    let mut table = Table::new(&[
        "ID",
        "HOST",
        "PID",
        "QUEUES",
        "STATE",
        "IN FLIGHT",
        "HEARTBEAT",
        "VERSION",
    ]);
    for w in &workers {
        table.row(vec![
            Cell::plain(&w.id),
            Cell::plain(&w.host),
            Cell::plain(w.pid.to_string()),
            Cell::plain(w.queues.join(",")),
            Cell::state(&w.state),
            Cell::plain(format!("{}/{}", w.in_flight, w.concurrency)),
            Cell::plain(output::ago(Some(w.last_heartbeat_ms))),
            Cell::plain(&w.version),
        ]);
    }
    out.block(&table.render())?;
    Ok(Exit::Ok)
}

/// `apex queues`.
pub async fn queues(args: &FleetArgs, out: &mut Printer) -> Result<Exit, CliError> {
    let client = Client::new(&args.conn)?;
    let body = client.get("/api/v1/queues").await?;
    if args.json {
        out.json(&body)?;
        return Ok(Exit::Ok);
    }
    let queues: Vec<Queue> =
        shapes::parse(&body["queues"], "queues").map_err(|m| client.unexpected(m))?;
    if queues.is_empty() {
        out.line("no queues yet: a queue appears with its first task or worker")?;
        return Ok(Exit::Ok);
    }
    let mut table = Table::new(&["QUEUE", "DEPTH", "RUNNING", "WORKERS", "DESIRED"]);
    for q in &queues {
        table.row(vec![
            Cell::plain(&q.name),
            Cell::plain(q.depth.to_string()),
            Cell::plain(q.running.to_string()),
            Cell::plain(q.workers_active.to_string()),
            Cell::plain(q.workers_desired.to_string()),
        ]);
    }
    out.block(&table.render())?;
    Ok(Exit::Ok)
}
