//! What can go wrong in a client command, and the one mapping from each failure to the
//! line a person reads and the exit code a script reads (docs/CLI.md).

use crate::api_types::ErrorBody;
use std::process::ExitCode;

/// How `apex` exits. The numbers are part of the CLI's contract: scripts branch on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The command did what was asked (for `watch`: the run succeeded).
    Ok = 0,
    /// The watched run finished, but failed or was cancelled.
    RunNotSucceeded = 1,
    /// The input was wrong: usage, a missing or unreadable file, invalid JSON, an invalid
    /// DAG or agent.
    BadInput = 2,
    /// The run, task or agent does not exist.
    NotFound = 3,
    /// The server wants an API token, or a different one (one with the scope needed), or
    /// refuses this address for presenting wrong tokens.
    Unauthorized = 4,
    /// The server cannot be reached or says it is unavailable; trying again later may work.
    Unavailable = 5,
    /// The request conflicts with the run's state (cancel a finished run, retry a running one).
    Conflict = 6,
    /// The server failed on its side, or answered something this CLI does not understand.
    ServerError = 7,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e as u8)
    }
}

/// A failed client command. Each message says what is wrong and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot read {path}: {reason}; check the path (or pass `-` to read standard input)")]
    UnreadableFile { path: String, reason: String },
    #[error("{path} is not valid JSON: {reason}; fix the file and try again")]
    InvalidJson { path: String, reason: String },
    #[error("{path} is not a valid DAG spec: {reason}; see docs/API.md for the fields a run and a task accept")]
    InvalidSpec { path: String, reason: String },
    #[error("{path} is not a valid DAG: {}", invalid_dag_advice(.error))]
    InvalidDag { path: String, error: ErrorBody },
    #[error("{path} is not a valid agent: {}", invalid_agent_advice(.error))]
    InvalidAgent { path: String, error: ErrorBody },
    #[error("the server rejected the request: {0}")]
    BadRequest(String),
    #[error("invalid --server {url:?}: {reason}; use http://HOST:PORT")]
    InvalidServer { url: String, reason: String },
    #[error("{message} on {server}; {hint}")]
    NotFound {
        server: String,
        message: String,
        hint: String,
    },
    #[error("the server at {server} {}", unauthorized_advice(.token_sent))]
    Unauthorized { server: String, token_sent: bool },
    #[error("the server at {server} refused: {message}; use a token with that scope (`apex tokens create` makes one)")]
    Forbidden { server: String, message: String },
    #[error("the server at {server} refuses this address for now: {message}; check --api-token / APEX_API_TOKEN")]
    Throttled { server: String, message: String },
    #[error("cannot reach the Apex server at {server} ({reason}); is it running? Start it with `apex serve`, or point --server / APEX_SERVER at it")]
    Unreachable { server: String, reason: String },
    #[error("the server at {server} is unavailable: {message}; try again shortly")]
    Unavailable { server: String, message: String },
    #[error("{0}")]
    Conflict(String),
    #[error("the server at {server} failed: {message}; the server's log says more")]
    Server { server: String, message: String },
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

fn invalid_dag_advice(error: &ErrorBody) -> String {
    match error.details.as_slice() {
        [one] => format!("{} [{}]; fix it and try again", one.message, one.code),
        _ => format!("{}; fix those listed below and try again", error.message),
    }
}

fn invalid_agent_advice(error: &ErrorBody) -> String {
    match error.details.as_slice() {
        [] => format!("{}; fix it and try again", error.message),
        [one] => format!("{} [{}]; fix it and try again", one.message, one.code),
        _ => format!("{}; fix those listed below and try again", error.message),
    }
}

fn unauthorized_advice(token_sent: &bool) -> &'static str {
    if *token_sent {
        "rejected the API token (401 unauthorized); set --api-token or APEX_API_TOKEN to a valid token (the server's, or one from `apex tokens create`)"
    } else {
        "requires an API token (401 unauthorized); pass --api-token or set APEX_API_TOKEN"
    }
}

impl CliError {
    /// The exit code this failure ends the command with.
    pub fn exit(&self) -> Exit {
        match self {
            CliError::UnreadableFile { .. }
            | CliError::InvalidJson { .. }
            | CliError::InvalidSpec { .. }
            | CliError::InvalidDag { .. }
            | CliError::InvalidAgent { .. }
            | CliError::BadRequest(_)
            | CliError::InvalidServer { .. } => Exit::BadInput,
            CliError::NotFound { .. } => Exit::NotFound,
            CliError::Unauthorized { .. }
            | CliError::Forbidden { .. }
            | CliError::Throttled { .. } => Exit::Unauthorized,
            CliError::Unreachable { .. } | CliError::Unavailable { .. } => Exit::Unavailable,
            CliError::Conflict(_) => Exit::Conflict,
            CliError::Server { .. } | CliError::Output(_) => Exit::ServerError,
        }
    }

    /// Whether trying the same request again later may succeed (the server is down or
    /// restarting), as opposed to a failure that repeating cannot fix.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            CliError::Unreachable { .. } | CliError::Unavailable { .. }
        )
    }

    /// Replaces the advice given with a "not found", for commands that know better.
    pub fn with_not_found_hint(self, hint: impl Into<String>) -> Self {
        match self {
            CliError::NotFound {
                server, message, ..
            } => CliError::NotFound {
                server,
                message,
                hint: hint.into(),
            },
            other => other,
        }
    }

    /// Whether this is standard output closing early (`apex runs | head`): not worth a word.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, CliError::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }

    /// The lines that follow the one-line message: each problem of an invalid DAG or agent.
    pub fn detail_lines(&self) -> Vec<String> {
        match self {
            // A single problem is already on the first line.
            CliError::InvalidDag { error, .. } | CliError::InvalidAgent { error, .. }
                if error.details.len() > 1 =>
            {
                error
                    .details
                    .iter()
                    .map(|d| format!("  - [{}] {}", d.code, d.message))
                    .collect()
            }
            _ => Vec::new(),
        }
    }
}
