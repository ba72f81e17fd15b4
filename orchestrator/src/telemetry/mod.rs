//! OpenTelemetry traces of runs, off unless the standard `OTEL_*` environment asks for
//! them (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`; not with
//! `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`).
//!
//! ```text
//! writer, after each commit ──observe()──▶ facts ──channel──▶ exporter task
//!                                                               assemble: facts → spans
//!                                                               OTLP/HTTP protobuf export
//! ```
//!
//! A span per run, a child per task, a child per attempt (events `queued` and `started`,
//! outcome as status and attributes). Ids are derived from the run id and
//! `(run, task, attempt)` ([`ids`]), so the engine holds no span objects and does no
//! I/O for traces: it calls [`observe`] with what it has just stored, and
//! [`traceparent`] when it writes a task message. Spans are exported when what they
//! cover ends, with the times the engine stored, so a restarted or standby orchestrator
//! continues the same trace. When tracing is off both calls return at once.

mod assemble;
mod export;
mod facts;
pub mod ids;

use crate::queue::Outgoing;
use crate::store::WriteBatch;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Why traces cannot be exported as configured.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot build the OTLP trace exporter: {0}")]
    Exporter(String),
}

/// Messages to the exporter task.
enum Msg {
    Facts(Vec<facts::Fact>),
    /// Export everything finished so far, then answer.
    Flush(oneshot::Sender<()>),
}

/// Batches of facts waiting for the exporter; when it falls this far behind, further
/// facts are dropped (counted) rather than slowing the writer.
const QUEUE: usize = 4_096;

static SINK: OnceLock<mpsc::Sender<Msg>> = OnceLock::new();

/// Whether the environment `env` asks for traces.
pub fn wanted(env: impl Fn(&str) -> Option<String>) -> bool {
    let is = |k: &str, v: &str| env(k).is_some_and(|x| x.trim().eq_ignore_ascii_case(v));
    if is("OTEL_SDK_DISABLED", "true") || is("OTEL_TRACES_EXPORTER", "none") {
        return false;
    }
    [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .iter()
    .any(|k| env(k).is_some_and(|v| !v.trim().is_empty()))
}

/// Starts exporting traces if the process environment asks for it (once per process;
/// later calls do nothing). Must run inside the Tokio runtime. True when tracing is on.
pub fn init_from_env() -> Result<bool, TelemetryError> {
    if SINK.get().is_some() {
        return Ok(true);
    }
    if !wanted(|k| std::env::var(k).ok()) {
        return Ok(false);
    }
    let exporter = export::exporter()?;
    let (tx, rx) = mpsc::channel(QUEUE);
    if SINK.set(tx).is_ok() {
        tokio::spawn(export::run(exporter, rx));
        tracing::info!("exporting OpenTelemetry traces over OTLP/HTTP");
    }
    Ok(true)
}

/// Whether traces are being exported.
pub fn enabled() -> bool {
    SINK.get().is_some()
}

/// The `traceparent` for a task message of this attempt, or `None` when tracing is off.
pub fn traceparent(run: &str, task: &str, attempt: u32) -> Option<String> {
    enabled().then(|| ids::traceparent(run, task, attempt))
}

/// Hands what a batch just stored to the exporter. Never waits: when the exporter is
/// behind, the batch's facts are dropped and counted.
pub fn observe(batch: &WriteBatch, outgoing: &Outgoing) {
    let Some(tx) = SINK.get() else {
        return;
    };
    let facts = facts::extract(batch, outgoing);
    if facts.is_empty() {
        return;
    }
    if tx.try_send(Msg::Facts(facts)).is_err() {
        metrics::counter!("apex_trace_batches_dropped_total").increment(1);
    }
}

/// Exports every span finished so far, waiting at most `timeout` (on shutdown).
pub async fn flush(timeout: Duration) {
    let Some(tx) = SINK.get() else {
        return;
    };
    let (done, rx) = oneshot::channel();
    if tx.send(Msg::Flush(done)).await.is_ok() {
        let _ = tokio::time::timeout(timeout, rx).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn only_an_otlp_endpoint_turns_traces_on() {
        assert!(!wanted(env(&[])));
        assert!(!wanted(env(&[("OTEL_SERVICE_NAME", "apex")])));
        assert!(wanted(env(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://c:4318"
        )])));
        assert!(wanted(env(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://c:4318/v1/traces"
        )])));
        assert!(!wanted(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])));
        assert!(!wanted(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_SDK_DISABLED", "TRUE"),
        ])));
        assert!(!wanted(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ])));
    }

    #[test]
    fn off_means_no_traceparent() {
        // No test in this binary initialises tracing.
        assert_eq!(traceparent("r", "t", 1), None);
    }
}
