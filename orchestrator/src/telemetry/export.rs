//! The exporter task: assembles spans from facts and sends them over OTLP/HTTP in
//! batches, off the engine's path. Export failures are logged and counted, never
//! retried forever: traces are best effort, the store is the record.

use super::assemble::Assembler;
use super::{Msg, TelemetryError};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::{SpanData, SpanExporter as _};
use opentelemetry_sdk::Resource;
use std::time::Duration;
use tokio::sync::mpsc;

/// Spans sent per export request.
const BATCH: usize = 512;
/// Most spans held while the collector is unreachable; older ones are dropped first.
const MAX_HELD: usize = 20_000;
/// How often finished spans are sent when fewer than a batch are waiting.
const EVERY: Duration = Duration::from_millis(1_000);

/// The OTLP/HTTP protobuf exporter, configured by the standard environment (endpoint,
/// headers, timeout), for service `apex` unless `OTEL_SERVICE_NAME` names another.
pub(super) fn exporter() -> Result<opentelemetry_otlp::SpanExporter, TelemetryError> {
    if std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").is_ok_and(|p| p.trim() == "grpc") {
        tracing::warn!(
            "OTEL_EXPORTER_OTLP_PROTOCOL=grpc is not supported; exporting over http/protobuf"
        );
    }
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    let mut resource = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name("apex");
    }
    exporter.set_resource(&resource.build());
    Ok(exporter)
}

pub(super) async fn run(exporter: opentelemetry_otlp::SpanExporter, mut rx: mpsc::Receiver<Msg>) {
    let mut assembler = Assembler::default();
    let mut held: Vec<SpanData> = Vec::new();
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = 0u64;
    loop {
        let flush = tokio::select! {
            msg = rx.recv() => match msg {
                Some(Msg::Facts(facts)) => {
                    for f in facts {
                        assembler.add(f);
                    }
                    held.extend(assembler.take());
                    if held.len() < BATCH {
                        continue;
                    }
                    None
                }
                Some(Msg::Flush(done)) => Some(done),
                None => break,
            },
            _ = tick.tick() => None,
        };
        metrics::gauge!("apex_trace_live_tasks").set(assembler.live_tasks() as f64);
        if held.len() > MAX_HELD {
            let extra = held.len() - MAX_HELD;
            held.drain(..extra);
            metrics::counter!("apex_trace_spans_dropped_total").increment(extra as u64);
        }
        while !held.is_empty() {
            let batch: Vec<SpanData> = held.drain(..held.len().min(BATCH)).collect();
            let n = batch.len() as u64;
            match exporter.export(batch).await {
                Ok(()) => {
                    failures = 0;
                    metrics::counter!("apex_trace_spans_exported_total").increment(n);
                }
                Err(e) => {
                    failures += 1;
                    metrics::counter!("apex_trace_spans_dropped_total").increment(n);
                    if failures == 1 || failures.is_multiple_of(100) {
                        tracing::warn!(error = %e, failures, "cannot export traces");
                    }
                    break;
                }
            }
        }
        if let Some(done) = flush {
            let _ = done.send(());
        }
    }
}
