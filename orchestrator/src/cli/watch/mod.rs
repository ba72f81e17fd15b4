//! `apex watch`: follows one run over the WebSocket until it finishes.
//!
//! The stream is a snapshot, then events with the run's sequence numbers (docs/API.md).
//! A [`Tracker`] folds them into each task's state, which feeds a progress bar (on a
//! terminal only) and a line per transition worth seeing. When the connection drops
//! (the server restarted, the network blinked), or stays silent while the store shows
//! the run moved on (a half-open socket, a server that stopped publishing), the watch
//! reconnects with `?since=LAST_SEQ` and the server replays exactly what was missed;
//! when the server says `resync`, it reconnects without `since` for a fresh snapshot.
//! The exit code is the run's outcome.

mod tracker;

pub use tracker::{Counts, Tracker, Transition};

use super::client::{encode, Client, Connection, Socket};
use super::error::{CliError, Exit};
use super::output::{self, Printer};
use super::shapes::{self, Event, Run};
use futures::{SinkExt, StreamExt};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// Silence after which the stream is checked: the server is pinged (no answer by the next
/// check means the connection is dead) and asked whether the run moved on meanwhile.
const SILENCE: Duration = Duration::from_secs(5);
/// First and longest pause between reconnection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(3);

/// How a watch copes with losing the server.
#[derive(Debug, Clone, clap::Args)]
pub struct WatchOptions {
    /// Keep trying to reconnect for this many seconds when the server goes away.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub reconnect_for: u64,
}

/// Arguments of `apex watch`.
#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// The run's id.
    #[arg(value_name = "RUN_ID")]
    pub id: String,
    /// Print JSON lines: the snapshot frame, then every event as the server sends it.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub options: WatchOptions,
    #[command(flatten)]
    pub conn: Connection,
}

/// `apex watch ID`.
pub async fn watch_command(args: &WatchArgs, out: &mut Printer) -> Result<Exit, CliError> {
    let client = Client::new(&args.conn)?;
    watch(&client, &args.id, &args.options, args.json, out).await
}

/// A transition as a line of the watch's transcript, or `None` when it is not shown.
fn describe(t: &Transition, verbose: bool, tracker: &Tracker) -> Option<String> {
    let allowed = |task: &str| tracker.attempts_allowed(task);
    let red = output::state_style("failed");
    Some(match t {
        Transition::Started { task, attempt } if verbose => {
            format!("▸ {task} started (attempt {attempt}/{})", allowed(task))
        }
        Transition::Succeeded { task, took_ms } if verbose => {
            let took = took_ms.map_or(String::new(), |ms| format!(" in {}", output::duration(ms)));
            format!(
                "{} {task} succeeded{took}",
                output::paint(output::state_style("succeeded"), "✓")
            )
        }
        Transition::Retrying {
            task,
            attempt,
            error,
        } => format!(
            "↻ {task} failed attempt {attempt}/{}: {error}; retrying",
            allowed(task)
        ),
        Transition::Failed {
            task,
            attempt,
            error,
        } => format!(
            "{} {task} {} (attempt {attempt}/{}): {error}",
            output::paint(red, "✗"),
            output::paint(red, "failed"),
            allowed(task)
        ),
        Transition::Skipped { task } => {
            format!("- {task} skipped: an upstream task did not succeed")
        }
        Transition::Cancelled { task } => format!("⊘ {task} cancelled"),
        _ => return None,
    })
}

/// How one connection ended.
enum Ended {
    /// The run finished.
    Finished,
    /// The server asked for a fresh snapshot.
    Resync,
    /// The connection was lost; why, in a few words.
    Lost(String),
}

/// What the watch shows: the transcript on standard output and the progress bar on
/// standard error, or JSON lines only.
struct View<'a> {
    out: &'a mut Printer,
    json: bool,
    bar: ProgressBar,
}

impl<'a> View<'a> {
    fn new(out: &'a mut Printer, json: bool) -> Self {
        let target = if !json && output::stderr_is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(None, target);
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner:.cyan} [{bar:30.cyan/blue}] {pos}/{len} done · {msg} · {elapsed}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        Self { out, json, bar }
    }

    /// A line of the transcript, printed above the bar.
    fn line(&mut self, text: &str) -> Result<(), CliError> {
        let (bar, out) = (&self.bar, &mut *self.out);
        bar.suspend(|| out.line(text))
    }

    /// A note about the connection: on standard error, so JSON output stays clean.
    fn note(&self, text: &str) {
        self.bar
            .suspend(|| anstream::eprintln!("{}", output::dim(&super::terminal::clean(text))));
    }

    fn show_counts(&self, tracker: &Tracker) {
        let c = tracker.counts();
        if self.bar.length().is_none() {
            self.bar.set_length(c.total);
            self.bar.enable_steady_tick(Duration::from_millis(120));
        }
        self.bar.set_position(c.done);
        self.bar
            .set_message(format!("{} running, {} failed", c.running, c.failed));
    }
}

/// The connection loop: state kept across reconnections.
struct Follow<'a> {
    client: &'a Client,
    view: View<'a>,
    tracker: Option<Tracker>,
    /// Set when the server asked for a resync: the next connection omits `since`.
    want_snapshot: bool,
}

/// Follows run `id` until it finishes; answers its outcome as an exit code.
pub async fn watch(
    client: &Client,
    id: &str,
    options: &WatchOptions,
    json: bool,
    out: &mut Printer,
) -> Result<Exit, CliError> {
    let mut f = Follow {
        client,
        view: View::new(out, json),
        tracker: None,
        want_snapshot: true,
    };
    let patience = Duration::from_secs(options.reconnect_for);
    let mut outage: Option<Instant> = None;
    let mut backoff = BACKOFF_MIN;
    loop {
        let since = match (&f.tracker, f.want_snapshot) {
            (Some(t), false) => Some(t.last_seq()),
            _ => None,
        };
        let socket = match client.follow_run(id, since).await {
            Ok(s) => s,
            // Before the first snapshot a failure is the user's to see at once (a wrong
            // id, a server that is not there); after it, the server may be restarting.
            Err(e) if e.is_transient() && f.tracker.is_some() => {
                let since = *outage.get_or_insert_with(Instant::now);
                if since.elapsed() >= patience {
                    f.view.bar.finish_and_clear();
                    return Err(e);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
            Err(e) => {
                f.view.bar.finish_and_clear();
                return Err(e);
            }
        };
        if outage.take().is_some() {
            f.view
                .note("reconnected; resuming where the stream stopped");
        }
        backoff = BACKOFF_MIN;
        match f.follow(socket).await {
            Ok(Ended::Finished) => return f.finish(),
            Ok(Ended::Resync) => f.want_snapshot = true,
            Ok(Ended::Lost(why)) => {
                f.view
                    .note(&format!("lost the connection ({why}); reconnecting…"));
                outage = Some(Instant::now());
            }
            Err(e) => {
                f.view.bar.finish_and_clear();
                return Err(e);
            }
        }
    }
}

impl Follow<'_> {
    /// Reads frames from one connection until the run finishes or the connection ends.
    async fn follow(&mut self, mut socket: Socket) -> Result<Ended, CliError> {
        let mut pinged = false;
        loop {
            let msg = match tokio::time::timeout(SILENCE, socket.next()).await {
                Err(_) if self.missed_events().await => {
                    return Ok(Ended::Lost(
                        "the stream went quiet while the run moved on".into(),
                    ))
                }
                Err(_) if pinged => return Ok(Ended::Lost("the server stopped answering".into())),
                Err(_) => {
                    pinged = true;
                    if socket
                        .send(Message::Ping(Default::default()))
                        .await
                        .is_err()
                    {
                        return Ok(Ended::Lost("the connection broke".into()));
                    }
                    continue;
                }
                Ok(None) | Ok(Some(Ok(Message::Close(_)))) => {
                    return Ok(Ended::Lost("the server closed the connection".into()))
                }
                Ok(Some(Err(e))) => return Ok(Ended::Lost(e.to_string())),
                Ok(Some(Ok(msg))) => msg,
            };
            pinged = false;
            let Message::Text(text) = msg else { continue };
            let frame: Value = serde_json::from_str(&text).map_err(|e| CliError::Server {
                server: "the WebSocket".into(),
                message: format!("a frame that is not JSON ({e})"),
            })?;
            if let Some(end) = self.on_frame(&frame).await? {
                let _ = socket.close(None).await;
                return Ok(end);
            }
        }
    }

    /// Whether the store holds events this stream has not delivered: the connection is
    /// open but dead (a half-open socket, a server that stopped publishing). A long task
    /// is silent too, so silence alone proves nothing; this one small read does.
    async fn missed_events(&self) -> bool {
        let Some(t) = &self.tracker else {
            return false;
        };
        let path = format!(
            "/api/v1/runs/{}/events?since={}&limit=1",
            encode(t.run_id()),
            t.last_seq()
        );
        match self.client.get(&path).await {
            Ok(body) => body["events"].as_array().is_some_and(|e| !e.is_empty()),
            Err(e) => e.is_transient(),
        }
    }

    async fn on_frame(&mut self, frame: &Value) -> Result<Option<Ended>, CliError> {
        match frame["type"].as_str() {
            Some("snapshot") => self.on_snapshot(frame).await,
            Some("events") => {
                for e in frame["events"].as_array().into_iter().flatten() {
                    if self.on_event(e)? {
                        return Ok(Some(Ended::Finished));
                    }
                }
                Ok(None)
            }
            Some("resync") => Ok(Some(Ended::Resync)),
            _ => Ok(None),
        }
    }

    async fn on_snapshot(&mut self, frame: &Value) -> Result<Option<Ended>, CliError> {
        // A big run's snapshot carries its first tasks only; the tracker needs them all.
        let mut run = frame["run"].clone();
        super::runs::complete_tasks(self.client, &mut run).await?;
        let run: Run = shapes::parse(&run, "snapshot").map_err(bad_frame)?;
        let seq = frame["seq"].as_u64().unwrap_or(run.summary.last_seq);
        if self.view.json {
            self.view.out.json_line(frame)?;
        } else if self.tracker.is_none() {
            self.view.line(&format!(
                "watching run {} ({}): {} tasks",
                output::bold(&run.summary.id),
                run.summary.name,
                run.tasks.as_ref().map_or(0, Vec::len)
            ))?;
        }
        let tracker = Tracker::from_snapshot(&run, seq);
        if let (Some(earlier), false) = (&self.tracker, self.view.json) {
            for t in tracker.changes_since(earlier) {
                if let Some(line) = describe(&t, tracker.verbose(), &tracker) {
                    self.view.line(&line)?;
                }
            }
        }
        self.view.show_counts(&tracker);
        let finished = tracker.outcome().is_some();
        self.tracker = Some(tracker);
        self.want_snapshot = false;
        Ok(finished.then_some(Ended::Finished))
    }

    /// Applies one event; answers whether the run has finished.
    fn on_event(&mut self, raw: &Value) -> Result<bool, CliError> {
        // Read by its `kind` alone: a kind this CLI does not know is passed over, not
        // an error.
        let kind = raw
            .get("kind")
            .and_then(Value::as_str)
            .ok_or_else(|| bad_frame("an event without a `kind`".into()))?;
        // Events before any snapshot cannot happen without `since`; nothing to apply to.
        let Some(tracker) = self.tracker.as_mut() else {
            return Ok(false);
        };
        // Live-only kinds (progress, streamed text) have no seq and move no task: they
        // are passed through to `--json` and otherwise ignored.
        if !tracker::is_stored(kind) {
            if self.view.json {
                self.view.out.json_line(raw)?;
            }
            return Ok(false);
        }
        let e: Event = shapes::parse(raw, "event").map_err(bad_frame)?;
        if tracker.seen(&e) {
            return Ok(false);
        }
        let transition = tracker.apply(&e);
        if self.view.json {
            self.view.out.json_line(raw)?;
        }
        let tracker = self.tracker.as_ref().expect("checked above");
        self.view.show_counts(tracker);
        let Some(t) = transition else {
            return Ok(false);
        };
        if !self.view.json {
            if let Some(line) = describe(&t, tracker.verbose(), tracker) {
                self.view.line(&line)?;
            }
        }
        Ok(matches!(t, Transition::RunFinished { .. }))
    }

    /// Clears the bar, prints the summary, and maps the outcome to the exit code.
    fn finish(mut self) -> Result<Exit, CliError> {
        self.view.bar.finish_and_clear();
        let Some(tracker) = self.tracker.take() else {
            return Ok(Exit::ServerError);
        };
        if !self.view.json {
            for line in tracker.summary(output::now_ms()) {
                self.view.out.line(&line)?;
            }
        }
        Ok(match tracker.outcome() {
            Some("succeeded") => Exit::Ok,
            _ => Exit::RunNotSucceeded,
        })
    }
}

fn bad_frame(message: String) -> CliError {
    CliError::Server {
        server: "the WebSocket".into(),
        message,
    }
}
