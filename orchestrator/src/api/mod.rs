//! The HTTP API (docs/API.md): one module per resource, errors mapped in [`error`].
//! [`app`] builds the whole router from state, so tests need no process. Who may call
//! what is settled in [`auth`]: each handler names the scope it needs.

mod agents;
mod audit;
pub mod auth;
pub mod body;
pub mod browser;
pub mod daily;
mod dashboard;
mod deadline;
mod decisions;
pub mod error;
mod failures;
mod fleet;
mod health;
pub mod hooks;
mod idempotency;
mod openapi;
pub mod params;
mod rerun;
mod run_delete;
pub mod run_docs;
mod runs;
pub mod schedules;
pub mod templates;
mod tokens;
mod ws;

pub use dashboard::embedded as dashboard_embedded;
pub use health::prometheus;
pub use openapi::document as openapi_document;
pub use ws::WsSlots;

use crate::dag::Limits;
use crate::engine::EngineHandle;
use crate::live::Bus;
use crate::queue::RedisQueue;
use crate::store::Store;
use axum::extract::DefaultBodyLimit;
use axum::Router;
use std::path::PathBuf;
use std::sync::Arc;
use tower_http::trace::TraceLayer;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub engine: EngineHandle,
    pub store: Arc<dyn Store>,
    pub queue: Arc<RedisQueue>,
    pub bus: Bus,
    pub limits: Limits,
    pub max_body_bytes: usize,
    /// Checks the tokens requests present; `None` when auth is off (`--no-auth`).
    pub auth: Option<Arc<auth::Authenticator>>,
    /// Most tasks a run's document carries inline (`GET /runs/{id}`, WebSocket snapshot).
    pub max_inline_tasks: u32,
    /// The WebSocket connections open, against `--max-websockets`.
    pub websockets: Arc<WsSlots>,
    /// How long any request but a WebSocket may take.
    pub request_timeout: std::time::Duration,
    /// A built dashboard to serve at `/` instead of the one compiled in (development).
    pub dashboard_dir: Option<PathBuf>,
    /// Which hosts and page origins may reach the API.
    pub browser: browser::BrowserPolicy,
    /// Turns true when the server stops, so long-lived connections close too.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Idempotency keys in flight and the everyday endpoints' settings.
    pub daily: Arc<daily::Daily>,
    /// Run documents kept while nothing has been stored since they were read.
    pub run_docs: Arc<run_docs::RunDocs>,
}

/// Records `apex_http_request_duration_seconds` by method, route pattern and status.
async fn record_latency(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = std::time::Instant::now();
    let method = req.method().to_string();
    // The route pattern, not the path: run ids would make a series per run.
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!("apex_http_request_duration_seconds", "method" => method, "route" => route, "status" => status)
        .record(started.elapsed().as_secs_f64());
    response
}

/// The whole HTTP surface.
pub fn app(state: AppState) -> Router {
    let cors = state.browser.cors();
    let bounded = Router::new()
        .merge(runs::router())
        .merge(rerun::router())
        .merge(decisions::router())
        .merge(agents::router())
        .merge(tokens::router())
        .merge(audit::router())
        .merge(fleet::router())
        .merge(templates::router())
        .merge(schedules::router())
        .merge(hooks::router(state.daily.hook_max_body_bytes))
        .merge(run_delete::router())
        .merge(health::router())
        .merge(openapi::router())
        .merge(dashboard::router(state.dashboard_dir.clone()))
        .layer(axum::middleware::from_fn_with_state(
            state.request_timeout,
            deadline::bound,
        ));
    // The WebSocket joins after the deadline: its connection lives as long as the client.
    let router = bounded
        .merge(ws::router())
        .layer(axum::middleware::from_fn(params::check))
        .layer(axum::middleware::from_fn(record_latency))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(DefaultBodyLimit::max(state.max_body_bytes));
    let router = match cors {
        Some(cors) => router.layer(cors),
        None => router,
    };
    router
        .layer(axum::middleware::from_fn_with_state(
            state.browser.clone(),
            browser::guard,
        ))
        // Spans name the path only: a query string may carry the API token.
        .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
            tracing::debug_span!("http", method = %req.method(), path = %req.uri().path())
        }))
        .with_state(state)
}
