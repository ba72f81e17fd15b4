//! Turns facts into finished spans. A span is built once, when what it covers has ended,
//! from the start and end times the engine stored; until then only a few plain fields
//! per live task are kept (when it was queued and started, by which worker). No I/O.

use super::facts::{Fact, TaskMeta};
use super::ids;
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use std::borrow::Cow;
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The attempt of a task that is queued or running.
#[derive(Debug, Clone)]
struct Open {
    attempt: u32,
    queued_ms: i64,
    started_ms: Option<i64>,
    worker: Option<String>,
    queue: Option<String>,
}

/// What is known of a task that has not ended.
#[derive(Debug, Default)]
struct Live {
    first_ms: Option<i64>,
    open: Option<Open>,
}

/// Spans under construction: the state of live tasks, and the spans finished so far.
#[derive(Debug, Default)]
pub(crate) struct Assembler {
    /// Handler, agent and queue of the tasks of runs not yet ended, by run then task.
    meta: HashMap<String, HashMap<String, TaskMeta>>,
    live: HashMap<(String, String), Live>,
    done: Vec<SpanData>,
}

fn time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

fn context(run: &str, span: ids::SpanId) -> SpanContext {
    SpanContext::new(
        TraceId::from_bytes(ids::trace_id(run)),
        SpanId::from_bytes(span),
        TraceFlags::SAMPLED,
        false,
        TraceState::NONE,
    )
}

fn scope() -> InstrumentationScope {
    InstrumentationScope::builder("apex")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}

/// One finished span's fields that differ between kinds.
struct Span {
    name: &'static str,
    run: String,
    id: ids::SpanId,
    parent: Option<ids::SpanId>,
    start_ms: i64,
    end_ms: i64,
    attributes: Vec<KeyValue>,
    events: Vec<opentelemetry::trace::Event>,
    status: Status,
}

fn finish(s: Span) -> SpanData {
    let mut events = SpanEvents::default();
    events.events = s.events;
    SpanData {
        span_context: context(&s.run, s.id),
        parent_span_id: s.parent.map_or(SpanId::INVALID, SpanId::from_bytes),
        parent_span_is_remote: false,
        span_kind: SpanKind::Internal,
        name: Cow::Borrowed(s.name),
        start_time: time(s.start_ms),
        end_time: time(s.end_ms.max(s.start_ms)),
        attributes: s.attributes,
        dropped_attributes_count: 0,
        events,
        links: SpanLinks::default(),
        status: s.status,
        instrumentation_scope: scope(),
    }
}

fn event(name: &'static str, ms: i64) -> opentelemetry::trace::Event {
    opentelemetry::trace::Event::new(name, time(ms), Vec::new(), 0)
}

impl Assembler {
    /// Spans finished since the last call.
    pub fn take(&mut self) -> Vec<SpanData> {
        std::mem::take(&mut self.done)
    }

    /// Tasks whose state is being followed (for the gauge and tests).
    pub fn live_tasks(&self) -> usize {
        self.live.len()
    }

    /// Takes one fact in.
    pub fn add(&mut self, fact: Fact) {
        match fact {
            Fact::Tasks { run, tasks } => {
                let m = self.meta.entry(run).or_default();
                for t in tasks {
                    m.insert(t.task.clone(), t);
                }
            }
            Fact::Task {
                run,
                task,
                state,
                attempt,
                worker,
                at_ms,
                queue,
                error,
                started_ms,
            } => self.task(
                run, task, &state, attempt, worker, at_ms, queue, error, started_ms,
            ),
            Fact::RunEnded {
                run,
                name,
                state,
                created_ms,
                finished_ms,
                error,
            } => {
                self.meta.remove(&run);
                let mut attributes = vec![
                    KeyValue::new("apex.run_id", run.clone()),
                    KeyValue::new("apex.run.state", state.clone()),
                ];
                if !name.is_empty() {
                    attributes.push(KeyValue::new("apex.run.name", name));
                }
                let status = match state.as_str() {
                    "succeeded" => Status::Ok,
                    _ => Status::error(error.unwrap_or(state)),
                };
                self.done.push(finish(Span {
                    name: "apex.run",
                    id: ids::run_span(&run),
                    run,
                    parent: None,
                    start_ms: created_ms,
                    end_ms: finished_ms,
                    attributes,
                    events: Vec::new(),
                    status,
                }));
            }
        }
    }

    fn attributes(&self, run: &str, task: &str) -> Vec<KeyValue> {
        let mut a = vec![
            KeyValue::new("apex.run_id", run.to_owned()),
            KeyValue::new("apex.task_id", task.to_owned()),
        ];
        if let Some(m) = self.meta.get(run).and_then(|m| m.get(task)) {
            a.push(KeyValue::new("apex.handler", m.handler.clone()));
            if let Some(agent) = &m.agent {
                a.push(KeyValue::new("apex.agent", agent.clone()));
            }
        }
        a
    }

    #[allow(clippy::too_many_arguments)]
    fn task(
        &mut self,
        run: String,
        task: String,
        state: &str,
        attempt: u32,
        worker: Option<String>,
        at_ms: i64,
        queue: Option<String>,
        error: Option<(String, String)>,
        started_ms: Option<i64>,
    ) {
        let key = (run, task);
        let live = self.live.entry(key.clone()).or_default();
        live.first_ms.get_or_insert(at_ms);
        // An event of a later attempt ends the one still open (its worker was lost, or
        // it was given back): it did not reach an outcome of its own.
        let superseded = live.open.take_if(|o| o.attempt < attempt);
        if let Some(o) = superseded {
            let span = self.attempt_span(&key, o, at_ms, "requeued", None);
            self.done.push(span);
        }
        let live = self.live.get_mut(&key).expect("inserted above");
        match state {
            "queued" => {
                if live.open.as_ref().is_none_or(|o| o.attempt != attempt) {
                    live.open = Some(Open {
                        attempt,
                        queued_ms: at_ms,
                        started_ms: None,
                        worker: None,
                        queue,
                    });
                }
            }
            "running" => {
                // After a restart the queued event may be in the past of another process.
                let o = live.open.get_or_insert(Open {
                    attempt,
                    queued_ms: at_ms,
                    started_ms: None,
                    worker: None,
                    queue: None,
                });
                o.started_ms = Some(at_ms);
                o.worker = worker;
            }
            outcome => {
                if let Some(mut o) = live.open.take_if(|o| o.attempt == attempt) {
                    // A result without a `started` message first: the stored row knows.
                    o.started_ms = o.started_ms.or(started_ms);
                    o.worker = o.worker.take().or(worker);
                    let span = self.attempt_span(&key, o, at_ms, outcome, error.clone());
                    self.done.push(span);
                }
                if matches!(outcome, "succeeded" | "failed" | "cancelled" | "skipped") {
                    let first = self
                        .live
                        .remove(&key)
                        .and_then(|l| l.first_ms)
                        .unwrap_or(at_ms);
                    let (run, task) = key;
                    let mut attributes = self.attributes(&run, &task);
                    attributes.push(KeyValue::new("apex.task.state", outcome.to_owned()));
                    attributes.push(KeyValue::new("apex.attempts", i64::from(attempt)));
                    let status = match outcome {
                        "succeeded" => Status::Ok,
                        "skipped" => Status::Unset,
                        _ => Status::error(error.map_or_else(|| outcome.to_owned(), |e| e.1)),
                    };
                    self.done.push(finish(Span {
                        name: "apex.task",
                        id: ids::task_span(&run, &task),
                        parent: Some(ids::run_span(&run)),
                        run,
                        start_ms: first,
                        end_ms: at_ms,
                        attributes,
                        events: Vec::new(),
                        status,
                    }));
                }
            }
        }
    }

    fn attempt_span(
        &self,
        (run, task): &(String, String),
        o: Open,
        end_ms: i64,
        outcome: &str,
        error: Option<(String, String)>,
    ) -> SpanData {
        let mut attributes = self.attributes(run, task);
        attributes.push(KeyValue::new("apex.attempt", i64::from(o.attempt)));
        attributes.push(KeyValue::new("apex.outcome", outcome.to_owned()));
        let queue = o.queue.or_else(|| {
            self.meta
                .get(run)
                .and_then(|m| m.get(task))
                .map(|m| m.queue.clone())
        });
        if let Some(q) = queue {
            attributes.push(KeyValue::new("apex.queue", q));
        }
        if let Some(w) = o.worker {
            attributes.push(KeyValue::new("apex.worker_id", w));
        }
        let mut events = vec![event("queued", o.queued_ms)];
        if let Some(s) = o.started_ms {
            events.push(event("started", s));
        }
        let status = match (outcome, &error) {
            ("succeeded", _) => Status::Ok,
            (_, Some((kind, message))) => {
                attributes.push(KeyValue::new("error.type", kind.clone()));
                Status::error(message.clone())
            }
            ("failed" | "cancelled", None) => Status::error(outcome.to_owned()),
            _ => Status::Unset,
        };
        finish(Span {
            name: "apex.attempt",
            run: run.clone(),
            id: ids::attempt_span(run, task, o.attempt),
            parent: Some(ids::task_span(run, task)),
            start_ms: o.queued_ms,
            end_ms,
            attributes,
            events,
            status,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(task: &str, state: &str, attempt: u32, at_ms: i64) -> Fact {
        Fact::Task {
            run: "r".into(),
            task: task.into(),
            state: state.into(),
            attempt,
            worker: (state == "running").then(|| "w1".to_owned()),
            at_ms,
            queue: None,
            error: (state == "ready").then(|| ("handler_error".to_owned(), "boom".to_owned())),
            started_ms: None,
        }
    }

    fn attr<'a>(s: &'a SpanData, key: &str) -> Option<&'a opentelemetry::Value> {
        s.attributes
            .iter()
            .find(|k| k.key.as_str() == key)
            .map(|k| &k.value)
    }

    #[test]
    fn a_retried_task_makes_two_attempt_spans_under_one_task_span() {
        let mut a = Assembler::default();
        a.add(Fact::Tasks {
            run: "r".into(),
            tasks: vec![TaskMeta {
                task: "t".into(),
                handler: "sum".into(),
                agent: None,
                queue: "default".into(),
            }],
        });
        for f in [
            ev("t", "queued", 1, 10),
            ev("t", "running", 1, 20),
            ev("t", "ready", 1, 30),
            ev("t", "queued", 2, 40),
            ev("t", "running", 2, 50),
            ev("t", "succeeded", 2, 60),
        ] {
            a.add(f);
        }
        a.add(Fact::RunEnded {
            run: "r".into(),
            name: "demo".into(),
            state: "succeeded".into(),
            created_ms: 5,
            finished_ms: 70,
            error: None,
        });
        let spans = a.take();
        let names: Vec<_> = spans.iter().map(|s| s.name.as_ref()).collect();
        assert_eq!(
            names,
            ["apex.attempt", "apex.attempt", "apex.task", "apex.run"]
        );
        let trace = TraceId::from_bytes(ids::trace_id("r"));
        assert!(spans.iter().all(|s| s.span_context.trace_id() == trace));
        let (first, second, task, run) = (&spans[0], &spans[1], &spans[2], &spans[3]);
        assert_eq!(first.parent_span_id, task.span_context.span_id());
        assert_eq!(second.parent_span_id, task.span_context.span_id());
        assert_eq!(task.parent_span_id, run.span_context.span_id());
        assert_eq!(run.parent_span_id, SpanId::INVALID);
        assert_eq!(attr(first, "apex.outcome"), Some(&"ready".into()));
        assert_eq!(first.status, Status::error("boom"));
        assert_eq!(attr(second, "apex.worker_id"), Some(&"w1".into()));
        assert_eq!(attr(second, "apex.handler"), Some(&"sum".into()));
        assert_eq!(attr(second, "apex.queue"), Some(&"default".into()));
        assert_eq!(second.status, Status::Ok);
        let at: Vec<_> = second
            .events
            .iter()
            .map(|e| (e.name.as_ref(), e.timestamp))
            .collect();
        assert_eq!(at, [("queued", time(40)), ("started", time(50))]);
        assert_eq!((task.start_time, task.end_time), (time(10), time(60)));
        assert_eq!((run.start_time, run.end_time), (time(5), time(70)));
        assert_eq!(a.live_tasks(), 0, "nothing is kept once the task ended");
        assert!(a.meta.is_empty(), "nor once the run ended");
    }

    #[test]
    fn a_later_attempt_closes_a_lost_one_and_a_restart_still_builds_spans() {
        let mut a = Assembler::default();
        // A process that never saw the queued event (it took over while this ran).
        a.add(ev("t", "running", 1, 20));
        a.add(ev("t", "queued", 2, 30));
        a.add(ev("t", "failed", 2, 40));
        // A result with no `started` before it: time and worker come with the outcome.
        a.add(ev("u", "queued", 1, 50));
        a.add(Fact::Task {
            run: "r".into(),
            task: "u".into(),
            state: "succeeded".into(),
            attempt: 1,
            worker: Some("w2".into()),
            at_ms: 70,
            queue: None,
            error: None,
            started_ms: Some(60),
        });
        let mut spans = a.take();
        let quick = spans.remove(3);
        assert_eq!(quick.name, "apex.attempt");
        assert_eq!(attr(&quick, "apex.worker_id"), Some(&"w2".into()));
        let at: Vec<_> = quick.events.iter().map(|e| e.timestamp).collect();
        assert_eq!(at, [time(50), time(60)]);
        assert_eq!(spans.len(), 4);
        spans.pop();
        assert_eq!(spans.len(), 3);
        assert_eq!(attr(&spans[0], "apex.outcome"), Some(&"requeued".into()));
        assert_eq!(
            spans[0].span_context.span_id(),
            SpanId::from_bytes(ids::attempt_span("r", "t", 1))
        );
        assert_eq!(spans[1].status, Status::error("failed"));
        assert_eq!(spans[2].name, "apex.task");
    }
}
