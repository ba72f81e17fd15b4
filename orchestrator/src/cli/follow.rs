//! `apex task show RUN TASK --follow`: prints the task's answer as its model streams
//! it, and exits when the task ends, with the task's outcome as the exit code.
//!
//! It follows the run's WebSocket for that task only (`?tasks=TASK`): the server sends
//! the text so far (an `answer` event), then each delta. When the connection drops it
//! resumes with `since`, and [`AnswerText`] prints only what it has not printed yet.
//! Once the task ends, whatever its stored output holds beyond what was printed (text
//! the stream never carried, or a task that finished before we connected) is printed
//! from there.

use super::client::{encode, Client, Socket};
use super::error::{CliError, Exit};
use super::output::{self, Printer};
use futures::StreamExt;
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// How long to keep trying to reconnect when the server goes away.
const RECONNECT_FOR: Duration = Duration::from_secs(60);
const BACKOFF: Duration = Duration::from_millis(500);

const TERMINAL: [&str; 4] = ["succeeded", "failed", "cancelled", "skipped"];

/// What to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Answer text, for standard output.
    Text(String),
    /// A note about the text (a new attempt, text the server no longer had), for
    /// standard error.
    Note(String),
}

/// How much of the current attempt's answer has been printed. Pure.
#[derive(Debug, Default)]
pub struct AnswerText {
    attempt: u32,
    /// Bytes of the attempt's text accounted for: printed, or noted as missing.
    printed: usize,
}

impl AnswerText {
    /// The text of `attempt` so far (its first `dropped` bytes no longer kept).
    pub fn so_far(&mut self, attempt: u32, text: &str, dropped: usize) -> Vec<Piece> {
        let mut out = self.switch_to(attempt);
        if attempt < self.attempt {
            return out;
        }
        let total = dropped + text.len();
        if total <= self.printed {
            return out;
        }
        if self.printed < dropped {
            out.push(Piece::Note(format!(
                "… {} bytes of the answer were no longer kept",
                dropped - self.printed
            )));
            out.push(Piece::Text(text.to_owned()));
        } else {
            let from = self.printed - dropped;
            match text.get(from..) {
                Some(rest) => out.push(Piece::Text(rest.to_owned())),
                None => out.push(Piece::Text(text.to_owned())),
            }
        }
        self.printed = total;
        out
    }

    /// Text `attempt` streamed after what was sent before.
    pub fn delta(&mut self, attempt: u32, delta: &str) -> Vec<Piece> {
        let mut out = self.switch_to(attempt);
        if attempt == self.attempt && !delta.is_empty() {
            self.printed += delta.len();
            out.push(Piece::Text(delta.to_owned()));
        }
        out
    }

    /// What the final text (the task's output, of `attempt`) holds beyond what was
    /// printed.
    pub fn rest_of(&mut self, attempt: u32, full: &str) -> Vec<Piece> {
        let mut out = self.switch_to(attempt);
        if attempt == self.attempt && full.len() > self.printed {
            if let Some(rest) = full.get(self.printed..) {
                out.push(Piece::Text(rest.to_owned()));
                self.printed = full.len();
            }
        }
        out
    }

    /// Whether any text has been printed.
    pub fn started(&self) -> bool {
        self.printed > 0
    }

    fn switch_to(&mut self, attempt: u32) -> Vec<Piece> {
        if attempt <= self.attempt {
            return Vec::new();
        }
        let note =
            (self.printed > 0).then(|| Piece::Note(format!("attempt {attempt} started over")));
        self.attempt = attempt;
        self.printed = 0;
        note.into_iter().collect()
    }
}

/// How one connection ended.
enum Ended {
    /// The task ended, in this state.
    Finished(String),
    /// The server asked for a fresh snapshot.
    Resync,
    Lost,
}

/// One task followed across connections.
struct Follow<'a> {
    run: &'a str,
    task: &'a str,
    out: &'a mut Printer,
    text: AnswerText,
    /// The last stored event of the run accounted for; a reconnection resumes after it.
    since: Option<u64>,
}

/// Follows task `task` of run `run` until it ends.
pub async fn follow(
    client: &Client,
    run: &str,
    task: &str,
    out: &mut Printer,
) -> Result<Exit, CliError> {
    let mut f = Follow {
        run,
        task,
        out,
        text: AnswerText::default(),
        since: None,
    };
    let mut outage: Option<Instant> = None;
    let state = loop {
        let socket = match client.open_stream(run, &[task], f.since).await {
            Ok(s) => s,
            Err(e) if e.is_transient() && f.since.is_some() => {
                if outage.get_or_insert_with(Instant::now).elapsed() >= RECONNECT_FOR {
                    return Err(e);
                }
                tokio::time::sleep(BACKOFF).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        outage = None;
        match f.read(socket).await? {
            Ended::Finished(state) => break state,
            Ended::Resync => f.since = None,
            Ended::Lost => outage = Some(Instant::now()),
        }
    };
    // The output holds the whole answer: print what the stream did not carry.
    let path = format!("/api/v1/runs/{}/tasks/{}", encode(run), encode(task));
    let detail = client.get(&path).await?;
    let attempt = detail["attempt"].as_u64().unwrap_or(0) as u32;
    let finished_text = match &detail["output"] {
        Value::String(s) => Some(s.as_str()),
        o => o["text"].as_str(),
    };
    match finished_text {
        Some(full) => {
            let pieces = f.text.rest_of(attempt, full);
            f.print(pieces)?;
        }
        None if !f.text.started() && !detail["output"].is_null() => {
            f.out.block(&output::indented_json(&detail["output"], ""))?;
        }
        None => {}
    }
    f.out.block("\n")?;
    let error = detail["error"]["message"].as_str().unwrap_or("");
    let line = format!(
        "task {task} {state}{}",
        if error.is_empty() {
            String::new()
        } else {
            format!(": {error}")
        }
    );
    anstream::eprintln!(
        "{}",
        output::paint(output::state_style(&state), &super::terminal::clean(&line))
    );
    Ok(if state == "succeeded" {
        Exit::Ok
    } else {
        Exit::RunNotSucceeded
    })
}

impl Follow<'_> {
    async fn read(&mut self, mut socket: Socket) -> Result<Ended, CliError> {
        while let Some(msg) = socket.next().await {
            let Ok(msg) = msg else { return Ok(Ended::Lost) };
            let Message::Text(text) = msg else { continue };
            let Ok(frame) = serde_json::from_str::<Value>(&text) else {
                return Err(CliError::Server {
                    server: "the WebSocket".into(),
                    message: "a frame that is not JSON".into(),
                });
            };
            if let Some(end) = self.on_frame(&frame)? {
                let _ = socket.close(None).await;
                return Ok(end);
            }
        }
        Ok(Ended::Lost)
    }

    fn on_frame(&mut self, frame: &Value) -> Result<Option<Ended>, CliError> {
        match frame["type"].as_str() {
            Some("snapshot") => {
                self.since = frame["seq"].as_u64();
                let task = frame["tasks"]
                    .as_array()
                    .and_then(|ts| ts.iter().find(|t| t["id"] == self.task));
                let Some(task) = task else {
                    return Err(CliError::NotFound {
                        server: "the WebSocket".into(),
                        message: format!("task {} not found in run {}", self.task, self.run),
                        hint: format!("`apex run show {}` lists the run's tasks", self.run),
                    });
                };
                Ok(terminal(&task["state"]).map(Ended::Finished))
            }
            Some("events") => {
                if let Some(to) = frame["seq_to"].as_u64() {
                    self.since = Some(to);
                }
                let mut end = None;
                for e in frame["events"].as_array().into_iter().flatten() {
                    if e["task_id"] != self.task {
                        continue;
                    }
                    let attempt = e["attempt"].as_u64().unwrap_or(0) as u32;
                    let pieces = match e["kind"].as_str() {
                        Some("answer") => self.text.so_far(
                            attempt,
                            e["text"].as_str().unwrap_or(""),
                            e["dropped_bytes"].as_u64().unwrap_or(0) as usize,
                        ),
                        Some("progress") => self
                            .text
                            .delta(attempt, e["text_delta"].as_str().unwrap_or("")),
                        Some("task") => {
                            end = terminal(&e["state"]).map(Ended::Finished).or(end);
                            Vec::new()
                        }
                        _ => Vec::new(),
                    };
                    self.print(pieces)?;
                }
                Ok(end)
            }
            Some("resync") => Ok(Some(Ended::Resync)),
            _ => Ok(None),
        }
    }

    fn print(&mut self, pieces: Vec<Piece>) -> Result<(), CliError> {
        for p in pieces {
            match p {
                Piece::Text(t) => self.out.block(&t)?,
                Piece::Note(n) => anstream::eprintln!("\n{}", output::dim(&n)),
            }
        }
        Ok(())
    }
}

fn terminal(state: &Value) -> Option<String> {
    state
        .as_str()
        .filter(|s| TERMINAL.contains(s))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(pieces: Vec<Piece>) -> String {
        pieces
            .into_iter()
            .map(|p| match p {
                Piece::Text(t) => t,
                Piece::Note(n) => format!("[{n}]"),
            })
            .collect()
    }

    #[test]
    fn text_is_printed_once_across_reconnections_and_the_final_output() {
        let mut a = AnswerText::default();
        let mut shown = texts(a.so_far(1, "The moon", 0));
        shown += &texts(a.delta(1, " pulls"));
        // Reconnected: the server sends the text so far again, longer now.
        shown += &texts(a.so_far(1, "The moon pulls the", 0));
        shown += &texts(a.rest_of(1, "The moon pulls the tides."));
        assert_eq!(shown, "The moon pulls the tides.");
        assert!(texts(a.rest_of(1, "The moon pulls the tides.")).is_empty());
    }

    #[test]
    fn a_new_attempt_starts_over_and_text_no_longer_kept_is_noted() {
        let mut a = AnswerText::default();
        assert_eq!(
            texts(a.so_far(1, "ides.", 20)),
            "[… 20 bytes of the answer were no longer kept]ides."
        );
        assert_eq!(texts(a.delta(2, "Again")), "[attempt 2 started over]Again");
        assert!(
            texts(a.delta(1, "late")).is_empty(),
            "an old attempt's text is ignored"
        );
    }
}
