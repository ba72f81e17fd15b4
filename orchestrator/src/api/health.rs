//! Liveness, readiness and Prometheus metrics.

use super::auth::{needs, Allowed};
use super::AppState;
use crate::api_types as t;
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

/// Liveness: the process answers. Needs no token.
#[utoipa::path(get, path = "/healthz", tag = "health", operation_id = "healthz", security(()),
    responses((status = 200, description = "Alive: `{\"status\": \"ok\"}`.", body = Object)))]
pub(super) async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// Readiness: the store and Redis answer and the writer is not stuck. Needs no token.
#[utoipa::path(get, path = "/readyz", tag = "health", operation_id = "readyz", security(()),
    responses(
        (status = 200, description = "Ready.", body = t::Readiness),
        (status = 503, description = "Not ready: each part says what is wrong.", body = t::Readiness),
    ))]
pub(super) async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let store = state.store.ping().await;
    let redis = state.queue.ping().await;
    // A reachable store that refuses the engine's writes is not ready either.
    let stuck = state.engine.writer_stuck();
    let body = t::Readiness {
        store: store
            .as_ref()
            .map(|_| "ok".to_owned())
            .unwrap_or_else(|e| e.to_string()),
        redis: redis
            .as_ref()
            .map(|_| "ok".to_owned())
            .unwrap_or_else(|e| e.to_string()),
        writer: stuck.as_ref().map_or_else(
            || "ok".to_owned(),
            |s| {
                format!(
                    "{} writes failing since {} ms: {}",
                    s.target, s.since_ms, s.error
                )
            },
        ),
    };
    let status = if store.is_ok() && redis.is_ok() && stuck.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// Round trip to a dependency.
async fn probe<E: std::fmt::Display>(
    f: impl std::future::Future<Output = Result<(), E>>,
) -> t::Probe {
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(std::time::Duration::from_secs(2), f).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let (ok, error) = match result {
        Ok(Ok(())) => (true, None),
        Ok(Err(e)) => (false, Some(e.to_string())),
        Err(_) => (false, Some("no answer within 2 s".into())),
    };
    t::Probe {
        ok,
        latency_ms,
        error,
    }
}

/// Health for people and dashboards: store, Redis, workers and queues. Needs scope `read`.
#[utoipa::path(get, path = "/api/v1/health", tag = "health", operation_id = "health",
    responses(
        (status = 200, description = "The store and Redis answer.", body = t::Health),
        (status = 503, description = "Degraded: the store or Redis does not answer (or `unavailable` on a standby).", body = t::Health),
    ))]
pub(super) async fn health(
    _: Allowed<needs::Read>,
    State(state): State<AppState>,
) -> impl IntoResponse {
    let store = probe(state.store.ping()).await;
    let redis = probe(state.queue.ping()).await;
    let workers = state.store.list_workers().await.unwrap_or_default();
    let count = |s: &str| {
        u32::try_from(workers.iter().filter(|w| w.state == s).count()).unwrap_or(u32::MAX)
    };
    let queues = super::fleet::queue_views(&state).await.unwrap_or_default();
    let ok = store.ok && redis.ok;
    let body = t::Health {
        status: if ok { "ok" } else { "degraded" }.to_owned(),
        store,
        redis,
        workers: t::WorkerCounts {
            running: count("running"),
            draining: count("draining"),
            lost: count("lost"),
            stopped: count("stopped"),
        },
        queues,
    };
    (
        if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        Json(body),
    )
}

/// Prometheus metrics, text format. Needs no token.
#[utoipa::path(get, path = "/metrics", tag = "health", operation_id = "metrics", security(()),
    responses((status = 200, description = "Prometheus text exposition format.", body = String, content_type = "text/plain")))]
pub(super) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let store = probe(state.store.ping()).await;
    let redis = probe(state.queue.ping()).await;
    metrics::gauge!("apex_store_up").set(if store.ok { 1.0 } else { 0.0 });
    metrics::gauge!("apex_redis_up").set(if redis.ok { 1.0 } else { 0.0 });
    metrics::gauge!("apex_store_ping_seconds").set(store.latency_ms / 1000.0);
    metrics::gauge!("apex_redis_ping_seconds").set(redis.latency_ms / 1000.0);
    if let Ok(queues) = super::fleet::queue_views(&state).await {
        for q in queues {
            // Gauges are floats; queue counts fit one exactly far beyond any real depth.
            #[allow(clippy::cast_precision_loss)]
            let gauge = |metric: &'static str, value: u64| {
                metrics::gauge!(metric, "queue" => q.name.clone()).set(value as f64);
            };
            gauge("apex_queue_depth", q.depth);
            gauge("apex_tasks_running", q.running);
            gauge("apex_workers_active", q.workers_active);
            gauge("apex_workers_desired", q.workers_desired);
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        prometheus().render(),
    )
}
