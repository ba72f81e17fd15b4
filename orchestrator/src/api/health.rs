//! Liveness, readiness and Prometheus metrics.

use super::auth::{needs, Allowed};
use super::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::json;
use std::sync::OnceLock;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/health", get(health))
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        // Histograms, not summaries: buckets aggregate across instances and over any
        // window in PromQL.
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                60.0, 300.0, 900.0,
            ])
            .expect("bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may exist (several servers in one test process); then this
        // handle renders nothing, which is acceptable there.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let store = state.store.ping().await;
    let redis = state.queue.ping().await;
    // A reachable store that refuses the engine's writes is not ready either.
    let stuck = state.engine.writer_stuck();
    let body = json!({
        "store": store.as_ref().map(|_| "ok".to_owned()).unwrap_or_else(|e| e.to_string()),
        "redis": redis.as_ref().map(|_| "ok".to_owned()).unwrap_or_else(|e| e.to_string()),
        "writer": stuck.as_ref().map_or_else(
            || "ok".to_owned(),
            |s| format!("{} writes failing since {} ms: {}", s.target, s.since_ms, s.error),
        ),
    });
    let status = if store.is_ok() && redis.is_ok() && stuck.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// Round trip to a dependency: `(ok, milliseconds, error)`.
async fn probe<E: std::fmt::Display>(
    f: impl std::future::Future<Output = Result<(), E>>,
) -> (bool, f64, Option<String>) {
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(std::time::Duration::from_secs(2), f).await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    match result {
        Ok(Ok(())) => (true, ms, None),
        Ok(Err(e)) => (false, ms, Some(e.to_string())),
        Err(_) => (false, ms, Some("no answer within 2 s".into())),
    }
}

/// Health as JSON: store, Redis, workers and queues, for people and dashboards.
async fn health(_: Allowed<needs::Read>, State(state): State<AppState>) -> impl IntoResponse {
    let (store_ok, store_ms, store_err) = probe(state.store.ping()).await;
    let (redis_ok, redis_ms, redis_err) = probe(state.queue.ping()).await;
    let workers = state.store.list_workers().await.unwrap_or_default();
    let count = |s: &str| workers.iter().filter(|w| w.state == s).count();
    let queues = super::fleet::queue_views(&state).await.unwrap_or_default();
    let ok = store_ok && redis_ok;
    let body = json!({
        "status": if ok { "ok" } else { "degraded" },
        "store": {"ok": store_ok, "latency_ms": store_ms, "error": store_err},
        "redis": {"ok": redis_ok, "latency_ms": redis_ms, "error": redis_err},
        "workers": {"running": count("running"), "draining": count("draining"), "lost": count("lost"), "stopped": count("stopped")},
        "queues": queues,
    });
    (
        if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        Json(body),
    )
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let (store_ok, store_ms, _) = probe(state.store.ping()).await;
    let (redis_ok, redis_ms, _) = probe(state.queue.ping()).await;
    metrics::gauge!("apex_store_up").set(if store_ok { 1.0 } else { 0.0 });
    metrics::gauge!("apex_redis_up").set(if redis_ok { 1.0 } else { 0.0 });
    metrics::gauge!("apex_store_ping_seconds").set(store_ms / 1000.0);
    metrics::gauge!("apex_redis_ping_seconds").set(redis_ms / 1000.0);
    if let Ok(queues) = super::fleet::queue_views(&state).await {
        for q in queues {
            let name = q["name"].as_str().unwrap_or_default().to_owned();
            let gauge = |metric: &'static str, field: &str| {
                metrics::gauge!(metric, "queue" => name.clone())
                    .set(q[field].as_f64().unwrap_or(0.0));
            };
            gauge("apex_queue_depth", "depth");
            gauge("apex_tasks_running", "running");
            gauge("apex_workers_active", "workers_active");
            gauge("apex_workers_desired", "workers_desired");
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        prometheus().render(),
    )
}
