//! The client CLI: `apex` commands that talk to a running orchestrator over REST and the
//! WebSocket (docs/API.md), and `apex validate`, which checks a DAG offline with the
//! server's own validation. Documented for users in docs/CLI.md.
//!
//! - [`client`]: HTTP and WebSocket to the server; transport failures and error answers
//!   become [`CliError`]s there, and only there.
//! - [`error`]: every failure, the line it prints and its exit code ([`Exit`]).
//! - [`shapes`]: readings of the shared API types ([`crate::api_types`]) for people.
//! - [`output`]: colour on terminals only, tables, times and durations.
//! - [`submit`]: reading DAG files; `submit` and `validate`.
//! - [`runs`]: `runs`, `run show`, `cancel`, `retry`.
//! - [`approve`]: `approve`, `reject`, `task cancel`: a person's decision on one task.
//! - [`task`]: `task show`; [`follow`]: `task show --follow`, a task's answer as it streams.
//! - [`fleet`]: `workers`, `queues`.
//! - [`agents`]: the agent registry: `agents`, `agents show`, `agents put`, `agents delete`.
//! - [`tokens`]: scoped API tokens: `tokens create`, `tokens list`, `tokens revoke`.
//! - [`watch`]: following a run live (`watch`, `submit --watch`).
//!
//! Every command returns `Result<Exit, CliError>`; [`run`] is the one place that prints
//! an error and turns it into the process's exit code.

pub mod agents;
pub mod approve;
pub mod client;
pub mod error;
pub mod fleet;
mod follow;
pub mod hooks;
pub mod output;
pub mod rerun;
pub mod run_delete;
mod run_layout;
pub mod runs;
pub mod schedules;
mod shapes;
pub mod submit;
pub mod task;
pub mod templates;
mod terminal;
pub mod tokens;
pub mod watch;

pub use error::{CliError, Exit};

use clap::Subcommand;
use std::process::ExitCode;

/// The exit codes, for `apex --help` (the same table is in docs/CLI.md).
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success (for watch: the run succeeded)
  1  the watched run failed or was cancelled
  2  bad input: usage, missing or unreadable file, invalid JSON, invalid DAG or agent
  3  run, task or agent not found
  4  unauthorized: missing or wrong API token, a token without the scope needed, or
     too many wrong tokens from this address lately
  5  server unreachable or unavailable
  6  conflict with the run's state (e.g. cancelling a finished run)
  7  the server failed or answered something unexpected";

/// The client commands of `apex`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Submit a DAG (a JSON file, or `-` for standard input) and print the run id.
    Submit(submit::SubmitArgs),
    /// Check a DAG file offline, with the same errors the server gives.
    Validate(submit::ValidateArgs),
    /// List recent runs, newest first; `apex runs delete ID` deletes a finished one.
    Runs(runs::ListArgs),
    /// Inspect a run.
    #[command(subcommand)]
    Run(runs::RunCommand),
    /// Inspect a task.
    #[command(subcommand)]
    Task(task::TaskCommand),
    /// Follow a run live until it finishes; the exit code tells how it ended.
    Watch(watch::WatchArgs),
    /// Cancel a running run: queued tasks are dropped, running ones are told to stop.
    Cancel(runs::RunIdArgs),
    /// Re-run the failed, cancelled and skipped tasks of a finished run.
    Retry(runs::RunIdArgs),
    /// Start a new run from chosen tasks of a finished run, reusing the rest's outputs.
    Rerun(rerun::RerunArgs),
    /// Approve a task waiting for a decision (an approval task): it succeeds.
    Approve(approve::ApproveArgs),
    /// Reject a task waiting for a decision: it fails, and what needed it is skipped.
    Reject(approve::RejectArgs),
    /// List the worker fleet.
    Workers(fleet::FleetArgs),
    /// Show each queue's depth and the work in flight on it.
    Queues(fleet::FleetArgs),
    /// List registered agents; `show`, `put` and `delete` manage one.
    Agents(agents::AgentsArgs),
    /// Create, list and revoke scoped API tokens (needs an admin token).
    #[command(subcommand)]
    Tokens(tokens::TokensCommand),
    /// Store versioned templates, list them, start runs of one.
    #[command(subcommand)]
    Templates(templates::TemplatesCommand),
    /// Run templates on a cron or an interval: put, list, pause, resume, delete.
    #[command(subcommand)]
    Schedules(schedules::SchedulesCommand),
    /// Webhooks in: signed deliveries that start templates.
    #[command(subcommand)]
    Hooks(hooks::HooksCommand),
}

/// Arguments of `apex completions`.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Writes the completion script for `shell` of the command `app` to standard output.
pub fn print_completions(args: &CompletionsArgs, app: &mut clap::Command) {
    let name = app.get_name().to_owned();
    clap_complete::generate(args.shell, app, name, &mut std::io::stdout());
}

/// Runs a client command to the end: prints its output, or one line saying what went
/// wrong, and answers the exit code.
pub async fn run(command: Command) -> ExitCode {
    let mut out = output::Printer::new();
    match execute(command, &mut out).await {
        Ok(exit) => exit.into(),
        // The reader went away (`apex runs | head`): nothing left to say to anyone.
        Err(e) if e.is_broken_pipe() => Exit::Ok.into(),
        Err(e) => {
            output::report_error(&e);
            e.exit().into()
        }
    }
}

async fn execute(command: Command, out: &mut output::Printer) -> Result<Exit, CliError> {
    match command {
        Command::Submit(args) => submit::submit(args, out).await,
        Command::Validate(args) => submit::validate(&args, out),
        Command::Runs(mut args) => match args.command.take() {
            Some(command) => run_delete::runs(command, out).await,
            None => runs::list(&args, out).await,
        },
        Command::Run(runs::RunCommand::Show(args)) => runs::show(&args, out).await,
        Command::Task(task::TaskCommand::Show(args)) => task::show(&args, out).await,
        Command::Task(task::TaskCommand::Cancel(args)) => approve::cancel(&args, out).await,
        Command::Approve(args) => approve::approve(&args, out).await,
        Command::Reject(args) => approve::reject(&args, out).await,
        Command::Watch(args) => watch::watch_command(&args, out).await,
        Command::Cancel(args) => runs::cancel(&args, out).await,
        Command::Retry(args) => runs::retry(&args, out).await,
        Command::Rerun(args) => rerun::rerun(&args, out).await,
        Command::Workers(args) => fleet::workers(&args, out).await,
        Command::Queues(args) => fleet::queues(&args, out).await,
        Command::Agents(args) => agents::agents(args, out).await,
        Command::Tokens(command) => tokens::tokens(command, out).await,
        Command::Templates(command) => templates::templates(command, out).await,
        Command::Schedules(command) => schedules::schedules(command, out).await,
        Command::Hooks(command) => hooks::hooks(command, out).await,
    }
}
