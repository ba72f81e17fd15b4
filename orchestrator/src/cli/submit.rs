//! DAG files: `apex submit` sends one to the server, `apex validate` checks one offline.
//!
//! Both parse the file with the server's own spec types, so a malformed file is named
//! here, with its line and column, before anything is sent. The DAG's rules are then
//! checked by the server for `submit` (its limits may be configured) and by
//! [`crate::dag::validate`] with default limits for `validate`; the two give the same
//! codes and messages because they are the same code.

use super::client::{Client, Connection};
use super::error::{CliError, Exit};
use super::output::{self, Printer};
use super::shapes::{self, RunSummary};
use super::watch::{self, WatchOptions};
use crate::api::error::ApiError;
use crate::api_types::{ErrorBody, ErrorCode};
use crate::dag::{self, Limits, RunSpec};
use serde_json::json;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Arguments of `apex submit`.
#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    /// The DAG as JSON (docs/API.md); `-` reads standard input.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Follow the run live until it finishes; the exit code then tells how it ended.
    #[arg(long)]
    pub watch: bool,
    /// Print the run summary as JSON (with --watch: one JSON event per line).
    #[arg(long)]
    pub json: bool,
    /// Sent as `Idempotency-Key`: a repeat with the same key and file answers the run
    /// the first one created. A fresh random key by default, so a retry of this
    /// invocation never starts a second run.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    #[command(flatten)]
    pub watch_options: WatchOptions,
    #[command(flatten)]
    pub conn: Connection,
}

/// Arguments of `apex validate`.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// The DAG as JSON; `-` reads standard input.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Print the verdict as JSON, exactly as `POST /api/v1/validate` answers it.
    #[arg(long)]
    pub json: bool,
}

/// A DAG file read into memory.
struct DagFile {
    /// How to name the file in messages.
    name: String,
    bytes: Vec<u8>,
}

impl DagFile {
    /// Reads `path`, or standard input for `-`.
    fn read(path: &Path) -> Result<Self, CliError> {
        let (name, bytes) = read_input(path)?;
        Ok(Self { name, bytes })
    }

    /// The spec the file holds, parsed exactly as the server parses a submission.
    fn parse(&self) -> Result<RunSpec, serde_json::Error> {
        crate::api::body::strict(&self.bytes)
    }

    /// Why the file is not a spec: bad JSON syntax, or JSON that is not a spec (an
    /// unknown field, a missing `tasks`).
    fn not_a_spec(&self, e: &serde_json::Error) -> CliError {
        let (path, reason) = (self.name.clone(), e.to_string());
        if e.is_syntax() || e.is_eof() {
            CliError::InvalidJson { path, reason }
        } else {
            CliError::InvalidSpec { path, reason }
        }
    }

    /// Names this file in a rejection that the server gave about "the request".
    fn blame(&self, e: CliError) -> CliError {
        match e {
            CliError::InvalidDag { error, .. } => CliError::InvalidDag {
                path: self.name.clone(),
                error,
            },
            other => other,
        }
    }
}

/// Reads a file a command was given, or standard input for `-`: how to name it in
/// messages, and its bytes.
pub(super) fn read_input(path: &Path) -> Result<(String, Vec<u8>), CliError> {
    let is_stdin = path.as_os_str() == "-";
    let name = if is_stdin {
        "standard input".to_owned()
    } else {
        path.display().to_string()
    };
    let result = if is_stdin {
        let mut bytes = Vec::new();
        std::io::stdin().read_to_end(&mut bytes).map(|_| bytes)
    } else {
        std::fs::read(path)
    };
    let bytes = result.map_err(|e| CliError::UnreadableFile {
        path: name.clone(),
        reason: describe_io(&e),
    })?;
    Ok((name, bytes))
}

/// An I/O error in a few words, without the OS error number.
fn describe_io(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        std::io::ErrorKind::IsADirectory => "it is a directory".into(),
        _ => {
            let s = e.to_string();
            s.split(" (os error").next().unwrap_or(&s).to_owned()
        }
    }
}

/// The error body the server answers for a body that does not parse as a spec.
fn invalid_json_body(bytes: &[u8], e: &serde_json::Error) -> ErrorBody {
    ErrorBody {
        code: ErrorCode::InvalidJson,
        message: ApiError::InvalidJson(crate::api::body::explain::<RunSpec>(bytes, e)).to_string(),
        details: Vec::new(),
        required_scope: None,
        run_id: None,
    }
}

/// The error body the server answers for a spec that breaks the DAG's rules.
fn invalid_dag_body(errors: dag::ValidationErrors) -> ErrorBody {
    let message = ApiError::InvalidDag(errors.clone()).to_string();
    ErrorBody {
        code: ErrorCode::InvalidDag,
        message,
        details: errors.0,
        required_scope: None,
        run_id: None,
    }
}

/// `apex validate FILE`.
pub fn validate(args: &ValidateArgs, out: &mut Printer) -> Result<Exit, CliError> {
    let file = DagFile::read(&args.file)?;
    // What the server would answer, beside what a person reads.
    let (error, body) = match file.parse() {
        Err(e) => (file.not_a_spec(&e), invalid_json_body(&file.bytes, &e)),
        Ok(spec) => match dag::validate(spec, &Limits::default()) {
            Ok(dag) if args.json => {
                out.json(&json!({"valid": true, "tasks": dag.len()}))?;
                return Ok(Exit::Ok);
            }
            Ok(dag) => {
                out.line(&format!(
                    "{}: a valid DAG of {} tasks",
                    file.name,
                    dag.len()
                ))?;
                return Ok(Exit::Ok);
            }
            Err(errors) => {
                let body = invalid_dag_body(errors);
                let path = file.name.clone();
                (
                    CliError::InvalidDag {
                        path,
                        error: body.clone(),
                    },
                    body,
                )
            }
        },
    };
    if args.json {
        out.json(&json!({"error": body}))?;
    }
    Err(error)
}

/// `apex submit FILE [--watch]`.
pub async fn submit(args: SubmitArgs, out: &mut Printer) -> Result<Exit, CliError> {
    let mut file = DagFile::read(&args.file)?;
    file.parse().map_err(|e| file.not_a_spec(&e))?;
    let client = Client::new(&args.conn)?;
    let key = args
        .idempotency_key
        .clone()
        .unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string());
    let body = client
        .post_idempotent("/api/v1/runs", std::mem::take(&mut file.bytes), &key)
        .await
        .map_err(|e| file.blame(e))?;
    let summary: RunSummary = shapes::parse(&body, "run").map_err(|m| client.unexpected(m))?;
    if args.watch {
        if !args.json {
            out.line(&format!(
                "submitted run {} ({} tasks)",
                output::bold(&summary.id),
                summary.task_count
            ))?;
        }
        return watch::watch(&client, &summary.id, &args.watch_options, args.json, out).await;
    }
    if args.json {
        out.json(&body)?;
    } else {
        // Only the id on standard output, so `ID=$(apex submit dag.json)` works.
        out.line(&summary.id)?;
        if output::stderr_is_terminal() {
            anstream::eprintln!(
                "{}",
                output::dim(&format!(
                    "submitted {} tasks; follow the run with `apex watch {}`",
                    summary.task_count, summary.id
                ))
            );
        }
    }
    Ok(Exit::Ok)
}
