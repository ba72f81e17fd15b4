//! The `apex` command: the server and the client CLI.

use clap::{CommandFactory, Parser, Subcommand};
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

/// mimalloc, not glibc's malloc: see its entry in Cargo.toml.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "apex",
    version,
    about = "Apex: an orchestrator for swarms of LLM agents and pipelines",
    after_help = apex::cli::EXIT_CODES_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the orchestrator against Postgres and Redis (production mode).
    Serve(apex::config::ServeConfig),
    /// Run everything on this machine with no setup: SQLite, a private Redis, local
    /// autoscaled workers, the API and the dashboard.
    Up(apex::up::UpArgs),
    #[command(flatten)]
    Client(apex::cli::Command),
    /// Print a shell completion script (e.g. `apex completions bash > /etc/bash_completion.d/apex`).
    Completions(apex::cli::CompletionsArgs),
    /// Print the OpenAPI document of the HTTP API (what `/api/v1/openapi.json` serves).
    #[command(hide = true)]
    Openapi,
}

/// One line on stderr for a failure of `serve` or `up`, never a debug dump.
fn failed(e: anyhow::Error) -> ExitCode {
    eprintln!("apex: {e:#}");
    ExitCode::from(1)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The server logs what it does; `up` reports scaling; a client command speaks only
    // through its output.
    let default_level = match cli.command {
        Command::Serve(_) => "info",
        Command::Up(_) => "warn,apex::up=info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("APEX_LOG").unwrap_or_else(|_| EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Serve(config) => {
            let served = async {
                let server = apex::server::start(config).await?;
                server.run_until(apex::server::shutdown_signal()).await
            };
            match served.await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => failed(e),
            }
        }
        Command::Up(args) => apex::up::run(args).await.unwrap_or_else(failed),
        Command::Client(command) => apex::cli::run(command).await,
        Command::Openapi => {
            print!("{}", apex::api::openapi_document());
            ExitCode::SUCCESS
        }
        Command::Completions(args) => {
            apex::cli::print_completions(&args, &mut Cli::command());
            ExitCode::SUCCESS
        }
    }
}
