//! One published event, classified and encoded once, however many streams and clients
//! it reaches.

use crate::api_types::{Event, LiveEvent, RunSummary};
use serde::Serialize;
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
    /// The text of a [`Kind::Text`] event.
    pub text: Option<Box<str>>,
    /// When the event became durable (or, for live-only events, was received).
    pub stored_at_ms: Option<i64>,
    /// The class of [`LiveEvent::supersession`] and the other readings of the typed
    /// event, taken before it is encoded and dropped (streams keep only the bytes).
    class: Option<u8>,
    terminal: bool,
    pinned: bool,
    summarised: bool,
    /// The event as the API shows it (docs/API.md), encoded once.
    pub json: Box<str>,
    /// For a run summary: its `run` object with `stored_at_ms`, as a run's frames carry
    /// it (`"run": {...}`).
    pub summary_json: Option<Box<str>>,
}

/// Task states after which nothing more happens to the attempt.
const TERMINAL: [&str; 4] = ["succeeded", "failed", "cancelled", "skipped"];

/// A run's summary with when it was stored: the `run` of a run's frames.
#[derive(Serialize)]
struct StampedSummary<'a> {
    #[serde(flatten)]
    run: &'a RunSummary,
    #[serde(skip_serializing_if = "Option::is_none")]
    stored_at_ms: Option<i64>,
}

/// Encodes a value that is plain data (string keys, finite numbers), which cannot fail;
/// an empty object would only hide a bug, which the contract tests would then catch.
fn encode<T: Serialize>(v: &T) -> Box<str> {
    serde_json::to_string(v)
        .unwrap_or_else(|_| "{}".into())
        .into_boxed_str()
}

/// How streams, coalescing and answers read a [`LiveEvent`]: no JSON involved.
impl LiveEvent {
    /// What the event is, as streams care.
    pub fn class(&self) -> Kind {
        match self {
            Self::Stored(e) => match e.kind.as_str() {
                "task" => Kind::Task,
                "run" => Kind::Run,
                "log" => Kind::Log,
                _ => Kind::Other,
            },
            Self::Progress(p) if p.text_delta.as_deref().is_some_and(|t| !t.is_empty()) => {
                Kind::Text
            }
            Self::Progress(_) => Kind::Progress,
            Self::RunCreated(_) | Self::RunUpdated(_) => Kind::RunSummary,
            Self::Worker(_) => Kind::Worker,
            Self::Queues(_) => Kind::Queues,
            Self::DeadLetter(_) | Self::Answer(_) => Kind::Other,
        }
    }

    /// Whom it is about: the task (stored task and log events, progress, answers), the
    /// run (its summary) or the worker.
    pub fn subject(&self) -> Option<&str> {
        match self {
            Self::Stored(e) if e.kind == "run" => None,
            Self::Stored(e) => e.task_id.as_deref(),
            Self::Progress(p) => Some(&p.task_id),
            Self::Answer(a) => Some(&a.task_id),
            Self::RunCreated(r) | Self::RunUpdated(r) => Some(&r.run.id),
            Self::Worker(w) => Some(&w.worker.id),
            Self::Queues(_) | Self::DeadLetter(_) => None,
        }
    }

    /// The attempt of task-scoped events (0 otherwise).
    pub fn attempt(&self) -> u32 {
        match self {
            Self::Stored(e) => e.attempt,
            Self::Progress(p) => p.attempt,
            Self::Answer(a) => a.attempt,
            _ => 0,
        }
    }

    /// The stored event, if it is one.
    fn stored(&self) -> Option<&Event> {
        match self {
            Self::Stored(e) => Some(e),
            _ => None,
        }
    }

    /// The state a stored task or run event moved to.
    pub fn state(&self) -> Option<&str> {
        self.stored().and_then(|e| e.state.as_deref())
    }

    /// A task that reached the end of its lifecycle (until the run is retried).
    pub fn is_terminal(&self) -> bool {
        self.class() == Kind::Task && self.state().is_some_and(|s| TERMINAL.contains(&s))
    }

    /// Whether it must be delivered even when a later event supersedes it: terminal
    /// states and recorded failures (a retried attempt's error) are news, not state.
    pub fn pinned(&self) -> bool {
        self.class() == Kind::Task
            && (self.is_terminal() || self.stored().is_some_and(|e| e.error.is_some()))
    }

    /// Whether it belongs in a run's summary stream: the run's transitions and its
    /// tasks' failures.
    pub fn summarised(&self) -> bool {
        match self.class() {
            Kind::Run => true,
            Kind::Task => self.state() == Some("failed"),
            _ => false,
        }
    }

    /// What a later event in the same frame supersedes, when both have this key:
    /// `(class, subject)`. A task's state, its progress, a run's summary, a worker, the
    /// queues; run transitions, logs, streamed text, answers and dead letters have none
    /// (every one of them is delivered).
    pub fn supersession(&self) -> Option<(u8, &str)> {
        let class = match self.class() {
            Kind::Task => 0,
            Kind::Progress => 1,
            Kind::RunSummary => 2,
            Kind::Worker => 3,
            Kind::Queues => return Some((4, "")),
            Kind::Run | Kind::Log | Kind::Text | Kind::Other => return None,
        };
        Some((class, self.subject()?))
    }

    /// Whether this event, later in the same frame, makes `earlier` redundant.
    pub fn supersedes(&self, earlier: &LiveEvent) -> bool {
        !earlier.pinned()
            && self
                .supersession()
                .is_some_and(|k| earlier.supersession() == Some(k))
    }
}

impl BusEvent {
    /// Classifies and encodes `event`. A fleet event (`run_id` none) is numbered `seq`
    /// first, so a client can resume after it.
    pub fn new(
        run_id: Option<Arc<str>>,
        run_seq: Option<u64>,
        seq: Option<u64>,
        mut event: LiveEvent,
    ) -> Self {
        if let (None, Some(seq)) = (&run_id, seq) {
            event.set_seq(seq);
        }
        #[cfg(test)]
        testing::ENCODED.with(|n| n.set(n.get() + 1));
        let kind = event.class();
        let stored_at_ms = event.stored_at_ms();
        let summary_json = match &event {
            LiveEvent::RunCreated(r) | LiveEvent::RunUpdated(r) => Some(encode(&StampedSummary {
                run: &r.run,
                stored_at_ms,
            })),
            _ => None,
        };
        Self {
            seq: run_id.is_none().then_some(seq).flatten(),
            run_seq,
            kind,
            subject: event.subject().map(Box::from),
            attempt: event.attempt(),
            state: event.state().map(Box::from),
            text: match &event {
                LiveEvent::Progress(p) if kind == Kind::Text => {
                    p.text_delta.as_deref().map(Box::from)
                }
                _ => None,
            },
            stored_at_ms,
            class: event.supersession().map(|(c, _)| c),
            terminal: event.is_terminal(),
            pinned: event.pinned(),
            summarised: event.summarised(),
            json: encode(&event),
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

    /// See [`LiveEvent::is_terminal`].
    pub fn is_terminal(&self) -> bool {
        self.terminal
    }

    /// What a later event with the same key makes redundant within one frame (see
    /// [`LiveEvent::supersession`]).
    pub fn key(&self) -> Option<(u8, &str)> {
        match (self.class, self.kind) {
            (Some(c), Kind::Queues) => Some((c, "")),
            (Some(c), _) => Some((c, self.subject.as_deref()?)),
            (None, _) => None,
        }
    }

    /// See [`LiveEvent::pinned`].
    pub fn pinned(&self) -> bool {
        self.pinned
    }

    /// See [`LiveEvent::summarised`].
    pub fn summarised(&self) -> bool {
        self.summarised
    }
}

/// Typed events for tests, with every field the API requires filled in.
#[cfg(test)]
pub mod testing {
    thread_local! {
        /// Events this thread classified and encoded ([`super::BusEvent::new`]): what
        /// publishing costs, for tests that it is not paid for nobody.
        pub static ENCODED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    use crate::api_types::{
        Event, LiveEvent, ProgressEvent, Queue, QueuesEvent, RunEvent, RunState, RunSummary,
        TaskError, Worker, WorkerEvent,
    };

    /// A stored event of run `r`.
    pub fn stored(kind: &str, task: Option<&str>, state: Option<&str>, attempt: u32) -> Event {
        Event {
            seq: 1,
            run_id: "r".into(),
            task_id: task.map(str::to_owned),
            kind: kind.into(),
            state: state.map(str::to_owned),
            attempt,
            at_ms: 1,
            worker_id: None,
            error: None,
            level: None,
            message: None,
            reason: None,
            by: None,
            stored_at_ms: None,
        }
    }

    /// Task `task` moved to `state` (attempt 1).
    pub fn task(task: &str, state: &str) -> LiveEvent {
        LiveEvent::Stored(stored("task", Some(task), Some(state), 1))
    }

    /// Task `task`'s attempt `attempt` moved to `state`.
    pub fn task_attempt(task: &str, attempt: u32, state: &str) -> LiveEvent {
        LiveEvent::Stored(stored("task", Some(task), Some(state), attempt))
    }

    /// Task `task` moved to `state`, recording a failure.
    pub fn task_failure(task: &str, attempt: u32, state: &str) -> LiveEvent {
        LiveEvent::Stored(Event {
            error: Some(TaskError {
                kind: "exception".into(),
                error_type: None,
                message: "boom".into(),
                traceback: None,
            }),
            ..stored("task", Some(task), Some(state), attempt)
        })
    }

    /// The run moved to `state`.
    pub fn run(state: &str) -> LiveEvent {
        LiveEvent::Stored(stored("run", None, Some(state), 0))
    }

    /// A log line of task `task`.
    pub fn log(task: &str, message: &str) -> LiveEvent {
        LiveEvent::Stored(Event {
            level: Some("info".into()),
            message: Some(message.into()),
            ..stored("log", Some(task), None, 1)
        })
    }

    /// A progress report of task `task` of run `r`.
    pub fn progress(task: &str, attempt: u32, progress: Option<f64>) -> LiveEvent {
        LiveEvent::Progress(ProgressEvent {
            run_id: "r".into(),
            task_id: task.into(),
            attempt,
            progress,
            message: String::new(),
            at_ms: 1,
            text_delta: None,
            stored_at_ms: None,
        })
    }

    /// Text task `task` of run `r` streamed.
    pub fn text(task: &str, attempt: u32, delta: &str) -> LiveEvent {
        let mut e = progress(task, attempt, None);
        if let LiveEvent::Progress(p) = &mut e {
            p.text_delta = Some(delta.into());
        }
        e
    }

    /// A running run's summary.
    pub fn summary(id: &str) -> RunSummary {
        RunSummary {
            id: id.into(),
            name: "n".into(),
            queue: "default".into(),
            state: RunState::Running,
            created_at_ms: 1,
            finished_at_ms: None,
            task_count: 1,
            // Every state is present, as the document requires.
            counts: [
                "pending",
                "ready",
                "queued",
                "running",
                "waiting",
                "succeeded",
                "failed",
                "cancelled",
                "skipped",
            ]
            .map(|s| (s.to_owned(), 0))
            .into(),
            error: None,
            last_seq: 1,
            usage: Default::default(),
            budget: None,
            max_parallel: None,
            created_by: None,
            template: None,
            schedule: None,
            schedule_tick_ms: None,
            hook: None,
            ttl_s: None,
            rerun_of: None,
        }
    }

    /// Run `id`'s summary changed.
    pub fn run_updated(id: &str) -> LiveEvent {
        LiveEvent::RunUpdated(RunEvent {
            run: summary(id),
            seq: 0,
            stored_at_ms: None,
        })
    }

    /// A running worker `id`.
    pub fn worker_view(id: &str) -> Worker {
        Worker {
            id: id.into(),
            host: "h".into(),
            pid: 1,
            queues: vec!["default".into()],
            concurrency: 4,
            in_flight: 0,
            handlers: vec![],
            version: "test".into(),
            state: "running".into(),
            started_at_ms: 1,
            last_heartbeat_ms: 2,
            heartbeat_interval_s: 5.0,
        }
    }

    /// Worker `id`'s state changed.
    pub fn worker(id: &str) -> LiveEvent {
        LiveEvent::Worker(WorkerEvent {
            worker: worker_view(id),
            seq: 0,
            stored_at_ms: None,
        })
    }

    /// The queues' stats changed.
    pub fn queues(queues: Vec<Queue>) -> LiveEvent {
        LiveEvent::Queues(QueuesEvent {
            queues,
            seq: 0,
            stored_at_ms: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use crate::api_types::{AnswerEvent, DeadLetterEvent, Queue, RunEvent, WorkerEvent};
    use serde_json::{json, Value};

    #[test]
    fn events_are_classified_by_their_variant() {
        let run: Option<Arc<str>> = Some("r".into());
        let mut failed = task_failure("a", 2, "failed");
        failed.stamp(9);
        let t = BusEvent::new(run.clone(), Some(3), None, failed);
        assert_eq!(
            (t.kind, t.subject.as_deref(), t.attempt),
            (Kind::Task, Some("a"), 2)
        );
        assert!(t.is_terminal() && t.pinned() && t.summarised());
        assert_eq!((t.cursor(), t.stored_at_ms), (Some(3), Some(9)));

        let text = BusEvent::new(run.clone(), None, None, text("a", 1, "Hel"));
        assert_eq!(
            (text.kind, text.text.as_deref(), text.key()),
            (Kind::Text, Some("Hel"), None)
        );
        let plain = BusEvent::new(run.clone(), None, None, progress("a", 1, None));
        assert_eq!((plain.kind, plain.key()), (Kind::Progress, Some((1, "a"))));
        // An empty delta is no text: it is a progress report like any other.
        let empty = BusEvent::new(run.clone(), None, None, super::testing::text("a", 1, ""));
        assert_eq!((empty.kind, empty.text), (Kind::Progress, None));

        let mut updated = run_updated("r");
        updated.stamp(5);
        let summary = BusEvent::new(None, None, Some(7), updated);
        assert_eq!(
            (summary.summary_of(), summary.cursor()),
            (Some("r"), Some(7))
        );
        let run_json: Value =
            serde_json::from_str(summary.summary_json.as_deref().unwrap()).unwrap();
        assert_eq!(
            (run_json["id"].clone(), run_json["stored_at_ms"].clone()),
            (json!("r"), json!(5))
        );
        assert!(summary.json.contains(r#""seq":7"#));

        type Case<'a> = (LiveEvent, Kind, Option<&'a str>, Option<(u8, &'a str)>);
        let cases: Vec<Case> = vec![
            (task("a", "running"), Kind::Task, Some("a"), Some((0, "a"))),
            (log("a", "x"), Kind::Log, Some("a"), None),
            (super::testing::run("running"), Kind::Run, None, None),
            (
                progress("a", 1, Some(0.5)),
                Kind::Progress,
                Some("a"),
                Some((1, "a")),
            ),
            (
                super::testing::text("a", 1, "x"),
                Kind::Text,
                Some("a"),
                None,
            ),
            (
                run_updated("r"),
                Kind::RunSummary,
                Some("r"),
                Some((2, "r")),
            ),
            (
                LiveEvent::RunCreated(RunEvent {
                    run: super::testing::summary("q"),
                    seq: 0,
                    stored_at_ms: None,
                }),
                Kind::RunSummary,
                Some("q"),
                Some((2, "q")),
            ),
            (worker("w"), Kind::Worker, Some("w"), Some((3, "w"))),
            (queues(vec![]), Kind::Queues, None, Some((4, ""))),
            (
                LiveEvent::DeadLetter(DeadLetterEvent {
                    letter: json!({}),
                    at_ms: 1,
                    seq: 0,
                    stored_at_ms: None,
                }),
                Kind::Other,
                None,
                None,
            ),
            (
                LiveEvent::Answer(AnswerEvent {
                    run_id: "r".into(),
                    task_id: "a".into(),
                    attempt: 1,
                    text: "x".into(),
                    dropped_bytes: 0,
                }),
                Kind::Other,
                Some("a"),
                None,
            ),
        ];
        for (e, kind, subject, key) in cases {
            assert_eq!(
                (e.class(), e.subject(), e.supersession()),
                (kind, subject, key),
                "{e:?}"
            );
            let run_id = (!matches!(
                kind,
                Kind::RunSummary | Kind::Worker | Kind::Queues | Kind::Other
            ))
            .then(|| Arc::from("r"));
            let b = BusEvent::new(run_id, None, Some(1), e);
            assert_eq!((b.kind, b.key()), (kind, key));
        }
    }

    #[test]
    fn a_later_event_supersedes_an_earlier_one_of_its_key_unless_that_one_is_pinned() {
        assert!(task("a", "running").supersedes(&task("a", "queued")));
        assert!(!task("b", "running").supersedes(&task("a", "queued")));
        // Terminal states and recorded failures are news.
        assert!(!task("a", "pending").supersedes(&task("a", "failed")));
        assert!(!task("a", "running").supersedes(&task_failure("a", 1, "queued")));
        assert!(task_failure("a", 1, "queued").pinned());
        assert!(!task("a", "queued").pinned() && !task("a", "queued").is_terminal());
        for s in ["succeeded", "failed", "cancelled", "skipped"] {
            assert!(task("a", s).is_terminal() && task("a", s).pinned());
        }
        // Progress by progress, summaries by run, workers by worker, queues whole.
        assert!(progress("a", 1, Some(0.5)).supersedes(&progress("a", 1, Some(0.1))));
        assert!(!progress("a", 1, None).supersedes(&task("a", "running")));
        assert!(run_updated("r").supersedes(&run_updated("r")));
        assert!(!run_updated("r").supersedes(&run_updated("s")));
        assert!(worker("w").supersedes(&worker("w")));
        assert!(queues(vec![]).supersedes(&queues(vec![Queue::default()])));
        // Text adds up; logs and run transitions are all delivered.
        assert!(!text("a", 1, "x").supersedes(&text("a", 1, "y")));
        assert!(!log("a", "x").supersedes(&log("a", "y")));
        assert!(!super::testing::run("running").supersedes(&super::testing::run("running")));
        // Summarised: the run's transitions and its tasks' failures.
        assert!(super::testing::run("running").summarised() && task("a", "failed").summarised());
        assert!(!task("a", "succeeded").summarised() && !progress("a", 1, None).summarised());
    }

    /// Each variant's JSON, against the shape the engine built by hand before events
    /// were typed (same fields, same nulls and absences).
    #[test]
    fn every_variant_encodes_as_it_did_untyped_and_as_the_document_says() {
        let doc: Value = serde_json::from_str(crate::api::openapi_document()).unwrap();
        let mut root = doc["components"]["schemas"]["LiveEvent"].clone();
        root["components"] = doc["components"].clone();
        let schema = jsonschema::validator_for(&root).expect("the schema compiles");
        let documented = |v: &Value| {
            let errors: Vec<String> = schema.iter_errors(v).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{v} is not a LiveEvent: {errors:?}");
        };
        let check = |e: LiveEvent, seq: Option<u64>, old: Value| {
            let run_id =
                matches!(e, LiveEvent::Stored(_) | LiveEvent::Progress(_)).then(|| Arc::from("r"));
            let b = BusEvent::new(run_id, None, seq, e);
            let new: Value = serde_json::from_str(&b.json).unwrap();
            assert_eq!(new, old, "{}", b.json);
            documented(&new);
            // And it reads back as itself (the CLI and tests read it).
            let back: LiveEvent = serde_json::from_str(&b.json).unwrap();
            assert_eq!(serde_json::to_value(&back).unwrap(), old);
        };

        let mut e = task_failure("a", 2, "failed");
        e.stamp(9);
        check(
            e,
            None,
            json!({"seq": 1, "run_id": "r", "task_id": "a", "kind": "task", "state": "failed",
                   "attempt": 2, "at_ms": 1, "worker_id": null,
                   "error": {"kind": "exception", "message": "boom"}, "stored_at_ms": 9}),
        );
        check(
            log("a", "hi"),
            None,
            json!({"seq": 1, "run_id": "r", "task_id": "a", "kind": "log", "state": null,
                   "attempt": 1, "at_ms": 1, "worker_id": null, "error": null,
                   "level": "info", "message": "hi"}),
        );

        // engine/reports.rs built progress with json!, adding text_delta when given.
        let mut e = super::testing::text("a", 3, "Hel");
        e.stamp(7);
        check(
            e,
            None,
            json!({"kind": "progress", "run_id": "r", "task_id": "a", "attempt": 3,
                   "progress": null, "message": "", "at_ms": 1, "text_delta": "Hel",
                   "stored_at_ms": 7}),
        );
        check(
            progress("a", 1, Some(0.25)),
            None,
            json!({"kind": "progress", "run_id": "r", "task_id": "a", "attempt": 1,
                   "progress": 0.25, "message": "", "at_ms": 1}),
        );

        // engine/flush.rs: {"kind", "run": views::run_summary}, the bus added `seq`.
        let mut e = LiveEvent::RunCreated(RunEvent {
            run: summary("r"),
            seq: 0,
            stored_at_ms: None,
        });
        e.stamp(5);
        check(
            e,
            Some(4),
            json!({"kind": "run_created", "run": serde_json::to_value(summary("r")).unwrap(),
                   "stored_at_ms": 5, "seq": 4}),
        );
        check(
            run_updated("r"),
            Some(4),
            json!({"kind": "run_updated", "run": serde_json::to_value(summary("r")).unwrap(), "seq": 4}),
        );

        // engine/flush.rs: the worker's info with its state and heartbeat.
        let info = worker_protocol::WorkerInfo {
            id: "w".into(),
            host: "h".into(),
            pid: 1,
            queues: vec!["default".into()],
            concurrency: 4,
            in_flight: 0,
            handlers: vec![],
            version: "test".into(),
            started_at_ms: 1,
            state: worker_protocol::WorkerState::Running,
            heartbeat_interval_s: 5.0,
        };
        let old_worker =
            crate::engine::worker_view(&serde_json::to_value(&info).unwrap(), "draining", 2);
        let mut e = LiveEvent::Worker(WorkerEvent {
            worker: crate::views::worker(&info, "draining", 2),
            seq: 0,
            stored_at_ms: None,
        });
        e.stamp(3);
        check(
            e,
            Some(9),
            json!({"kind": "worker", "worker": old_worker, "stored_at_ms": 3, "seq": 9}),
        );

        // engine/core.rs: queues (QueueStats) and dead letters.
        let stats = crate::engine::QueueStats {
            name: "q".into(),
            depth: 1,
            running: 2,
            workers_active: 3,
            workers_desired: 4,
        };
        let mut e = queues(vec![Queue::from(&stats)]);
        e.stamp(3);
        check(
            e,
            Some(1),
            json!({"kind": "queues", "queues": [stats], "stored_at_ms": 3, "seq": 1}),
        );
        let letter = json!({"raw": "x", "error": "bad"});
        let mut e = LiveEvent::DeadLetter(DeadLetterEvent {
            letter: letter.clone(),
            at_ms: 8,
            seq: 0,
            stored_at_ms: None,
        });
        e.stamp(9);
        check(
            e,
            Some(2),
            json!({"kind": "dead_letter", "letter": letter, "at_ms": 8, "stored_at_ms": 9, "seq": 2}),
        );

        // live/answers.rs.
        let e = LiveEvent::Answer(AnswerEvent {
            run_id: "r".into(),
            task_id: "a".into(),
            attempt: 1,
            text: "x".into(),
            dropped_bytes: 4,
        });
        let old = json!({"kind": "answer", "run_id": "r", "task_id": "a", "attempt": 1, "text": "x", "dropped_bytes": 4});
        assert_eq!(serde_json::to_value(&e).unwrap(), old);
        documented(&old);
        // The document tells the kinds apart: a shape that is none of them is refused.
        assert!(!schema.is_valid(&json!({"kind": "progress", "run_id": "r"})));
    }
}
