//! One published event, classified and encoded once, however many streams and clients
//! it reaches.

use serde_json::Value;
use std::sync::Arc;

/// What an event is, as far as streams, coalescing and answers care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A stored transition of a task.
    Task,
    /// A stored transition of the run.
    Run,
    /// A stored log line.
    Log,
    /// A live-only progress report without text; only the latest one matters.
    Progress,
    /// Live-only streamed text (`progress` with a `text_delta`): deltas add up, so none
    /// is ever dropped in favour of a later one.
    Text,
    /// A run's summary (`run_created`, `run_updated`), on the fleet stream; a run's
    /// stream carries the latest one as the frame's `run`.
    RunSummary,
    /// A worker's state, on the fleet stream.
    Worker,
    /// Every queue's stats, on the fleet stream.
    Queues,
    /// Anything else on the fleet stream (dead letters): always delivered.
    Other,
}

/// One published event.
#[derive(Debug)]
pub struct BusEvent {
    /// The bus sequence number of a fleet event; `None` on a run's events, which are
    /// numbered by the run (`run_seq`).
    pub seq: Option<u64>,
    /// The run whose stream carries it; `None` for fleet events.
    pub run_id: Option<Arc<str>>,
    /// The run's own sequence number, for stored events.
    pub run_seq: Option<u64>,
    pub kind: Kind,
    /// Whom it is about: the task (task, log, progress, text), the run (run summary) or
    /// the worker.
    pub subject: Option<Box<str>>,
    /// The attempt of task-scoped events (0 otherwise).
    pub attempt: u32,
    /// The state a task or run event moved to.
    pub state: Option<Box<str>>,
    /// Whether the transition records a failure (it carries an `error`).
    pub has_error: bool,
    /// The text of a [`Kind::Text`] event.
    pub text: Option<Box<str>>,
    /// When the event became durable (or, for live-only events, was received).
    pub stored_at_ms: Option<i64>,
    /// The event as the API shows it (docs/API.md), encoded once.
    pub json: Box<str>,
    /// For a run summary: its `run` object with `stored_at_ms`, as a run's frames carry
    /// it (`"run": {...}`).
    pub summary_json: Option<Box<str>>,
}

/// Task states after which nothing more happens to the attempt.
const TERMINAL: [&str; 4] = ["succeeded", "failed", "cancelled", "skipped"];

impl BusEvent {
    /// Classifies `body` (an event as the API shows it). A fleet event (`run_id` none)
    /// gets `seq` written into its body, so a client can resume after it.
    pub fn new(
        run_id: Option<Arc<str>>,
        run_seq: Option<u64>,
        seq: Option<u64>,
        mut body: Value,
    ) -> Self {
        let str_of = |k: &str, b: &Value| b[k].as_str().map(Box::from);
        let kind = match body["kind"].as_str() {
            Some("task") => Kind::Task,
            Some("run") => Kind::Run,
            Some("log") => Kind::Log,
            Some("progress") if body["text_delta"].as_str().is_some_and(|t| !t.is_empty()) => {
                Kind::Text
            }
            Some("progress") => Kind::Progress,
            Some("run_created" | "run_updated") => Kind::RunSummary,
            Some("worker") => Kind::Worker,
            Some("queues") => Kind::Queues,
            _ => Kind::Other,
        };
        let subject = match kind {
            Kind::RunSummary => str_of("id", &body["run"]),
            Kind::Worker => str_of("id", &body["worker"]),
            Kind::Queues | Kind::Other | Kind::Run => None,
            _ => str_of("task_id", &body),
        };
        if run_id.is_none() {
            if let (Some(seq), Value::Object(m)) = (seq, &mut body) {
                m.insert("seq".into(), seq.into());
            }
        }
        let stored_at_ms = body["stored_at_ms"].as_i64();
        let summary_json = (kind == Kind::RunSummary).then(|| {
            let mut run = body["run"].clone();
            if let (Value::Object(m), Some(at)) = (&mut run, stored_at_ms) {
                m.insert("stored_at_ms".into(), at.into());
            }
            run.to_string().into_boxed_str()
        });
        Self {
            seq: run_id.is_none().then_some(seq).flatten(),
            run_seq,
            kind,
            subject,
            attempt: body["attempt"].as_u64().unwrap_or(0) as u32,
            state: str_of("state", &body),
            has_error: !body["error"].is_null(),
            text: (kind == Kind::Text)
                .then(|| str_of("text_delta", &body))
                .flatten(),
            stored_at_ms,
            json: body.to_string().into_boxed_str(),
            summary_json,
            run_id,
        }
    }

    /// The run a fleet summary describes.
    pub fn summary_of(&self) -> Option<&str> {
        (self.kind == Kind::RunSummary)
            .then_some(self.subject.as_deref())
            .flatten()
    }

    /// The position a client's cursor takes after this event: the run's sequence number
    /// on a run's stream, the bus's on the fleet's; `None` for live-only events.
    pub fn cursor(&self) -> Option<u64> {
        match self.run_id {
            Some(_) => self.run_seq,
            None => self.seq,
        }
    }

    /// A task that reached the end of its lifecycle (until the run is retried).
    pub fn is_terminal(&self) -> bool {
        self.kind == Kind::Task && self.state.as_deref().is_some_and(|s| TERMINAL.contains(&s))
    }

    /// What a later event with the same key makes redundant within one frame:
    /// `(class, subject)`.
    pub fn key(&self) -> Option<(u8, &str)> {
        let class = match self.kind {
            Kind::Task => 0,
            Kind::Progress => 1,
            Kind::RunSummary => 2,
            Kind::Worker => 3,
            Kind::Queues => return Some((4, "")),
            Kind::Run | Kind::Log | Kind::Text | Kind::Other => return None,
        };
        Some((class, self.subject.as_deref()?))
    }

    /// Whether the event must be delivered even when a later one has its key: terminal
    /// states and recorded failures (a retried attempt's error) are news, not state.
    pub fn pinned(&self) -> bool {
        self.kind == Kind::Task && (self.is_terminal() || self.has_error)
    }

    /// Whether it belongs in a run's summary stream: the run's transitions and its
    /// tasks' failures.
    pub fn summarised(&self) -> bool {
        match self.kind {
            Kind::Run => true,
            Kind::Task => self.state.as_deref() == Some("failed"),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_are_classified_from_their_body() {
        let run: Option<Arc<str>> = Some("r".into());
        let t = BusEvent::new(
            run.clone(),
            Some(3),
            None,
            json!({"kind": "task", "task_id": "a", "state": "failed", "attempt": 2, "error": {"message": "x"}, "stored_at_ms": 9}),
        );
        assert_eq!(
            (t.kind, t.subject.as_deref(), t.attempt),
            (Kind::Task, Some("a"), 2)
        );
        assert!(t.is_terminal() && t.pinned() && t.summarised());
        assert_eq!((t.cursor(), t.stored_at_ms), (Some(3), Some(9)));

        let text = BusEvent::new(
            run.clone(),
            None,
            None,
            json!({"kind": "progress", "task_id": "a", "attempt": 1, "text_delta": "Hel"}),
        );
        assert_eq!(
            (text.kind, text.text.as_deref(), text.key()),
            (Kind::Text, Some("Hel"), None)
        );
        let plain = BusEvent::new(
            run,
            None,
            None,
            json!({"kind": "progress", "task_id": "a", "text_delta": null}),
        );
        assert_eq!(plain.key(), Some((1, "a")));

        let summary = BusEvent::new(
            None,
            None,
            Some(7),
            json!({"kind": "run_updated", "run": {"id": "r"}, "stored_at_ms": 5}),
        );
        assert_eq!(
            (summary.summary_of(), summary.cursor()),
            (Some("r"), Some(7))
        );
        assert_eq!(
            summary.summary_json.as_deref(),
            Some(r#"{"id":"r","stored_at_ms":5}"#)
        );
        assert!(summary.json.contains(r#""seq":7"#));
    }
}
