//! Assembles the running server: store, Redis, engine, HTTP.

use crate::api::browser::BrowserPolicy;
use crate::api::error::ApiError;
use crate::api::{self, AppState};
use crate::config::ServeConfig;
use crate::dag::Limits;
use crate::engine::{self, EngineConfig, EngineHandle};
use crate::live::{Bus, BusConfig};
use crate::queue::RedisQueue;
use crate::store::leader::Leadership;
use crate::store::Store;
use anyhow::Context;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower::ServiceExt;
use worker_protocol::Keys;

/// A server running in this process.
pub struct RunningServer {
    /// Where it listens (the real port when bound to port 0).
    pub addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    http: JoinHandle<std::io::Result<()>>,
    engine: JoinHandle<()>,
    /// Where `engine` runs; dropped (shut down) after it.
    _engine_runtime: engine::EngineRuntime,
    leadership: Leadership,
    /// The running engine, for in-process callers (`apex up`).
    pub handle: EngineHandle,
    /// The store it writes to.
    pub store: Arc<dyn Store>,
}

impl RunningServer {
    /// Stops accepting requests, lets the engine write what it holds, and waits.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.http.await;
        let _ = self.engine.await;
        // The spans of what the engine wrote last, before the process exits.
        crate::telemetry::flush(Duration::from_secs(5)).await;
        drop(self.leadership);
    }

    /// Serves until `signal` fires (a clean stop) or another orchestrator takes over
    /// (an error: this one must not go on scheduling).
    pub async fn run_until(
        mut self,
        signal: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let lost = tokio::select! {
            _ = signal => false,
            _ = self.leadership.lost() => true,
        };
        if lost {
            // What this one still holds is stale: the new leader recovered from the store.
            self.handle.abandon();
        }
        tracing::info!("shutting down");
        self.stop().await;
        if lost {
            anyhow::bail!("another orchestrator took over the leader lock");
        }
        Ok(())
    }
}

/// The router requests go to: the full API once this process leads, health only before.
type Slot = Arc<parking_lot::RwLock<Option<Router>>>;

/// What a standby answers: alive, not ready, and no API.
async fn standby(req: Request) -> Response {
    match req.uri().path() {
        "/healthz" => Json(json!({"status": "ok", "role": "standby"})).into_response(),
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"role": "standby"})),
        )
            .into_response(),
        _ => ApiError::Unavailable(
            "this orchestrator is a standby; another one leads and serves the API".into(),
        )
        .into_response(),
    }
}

/// Why the server cannot listen.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("cannot listen on {0}: the port is already in use (another Apex, or another program); choose another address with --bind (APEX_BIND), e.g. --bind {ip}:{next}", ip = .0.ip(), next = .0.port().wrapping_add(1).max(1024))]
    InUse(SocketAddr),
    #[error("cannot listen on {0}: {1}; choose another address with --bind (APEX_BIND)")]
    Other(SocketAddr, std::io::Error),
}

/// Listens on `addr`, with an error that says what to change.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, BindError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => BindError::InUse(addr),
            _ => BindError::Other(addr, e),
        })
}

/// Listens at once (answering as a standby), waits for the leader lock, recovers
/// running runs, and starts serving the API.
pub async fn start(config: ServeConfig) -> anyhow::Result<RunningServer> {
    config.auth()?;
    let listener = bind(config.bind).await?;
    start_on(config, listener).await
}

/// [`start`] on a listener the caller bound.
pub async fn start_on(
    config: ServeConfig,
    listener: tokio::net::TcpListener,
) -> anyhow::Result<RunningServer> {
    let api_token = config.auth()?;
    if api_token.is_none() {
        tracing::warn!(
            "authentication is off (--no-auth): any program or web page that can reach {} can use the API",
            config.bind
        );
    }
    let addr = listener.local_addr()?;
    let providers = match &config.providers_file {
        Some(path) => crate::providers::load(path)?,
        None => crate::providers::built_in(),
    };
    let ceilings = match &config.concurrency_limits_file {
        Some(path) => crate::ceilings::Ceilings::load(path)?,
        None => crate::ceilings::Ceilings::default(),
    };
    let browser = BrowserPolicy::new(addr, &config.allowed_hosts, &config.cors_origins);
    if !browser.checks_host() {
        tracing::warn!(
            "bound to all interfaces with no --allowed-hosts: any Host header is accepted; \
             set APEX_ALLOWED_HOSTS to the names clients use"
        );
    }
    crate::telemetry::init_from_env()?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let slot: Slot = Arc::new(parking_lot::RwLock::new(None));
    let http = serve(listener, Arc::clone(&slot), shutdown_rx.clone());

    let mut leadership = Leadership::acquire(&config.database_url, || {
        tracing::info!("another orchestrator leads; waiting as a standby")
    })
    .await?;
    tracing::info!("this orchestrator leads");

    let store: Arc<dyn Store> = crate::store::open(&config.database_url)
        .await
        .with_context(|| format!("cannot open the store at {}", redact(&config.database_url)))?;
    // Before reading anything: from here on, a write of an earlier leader that still
    // believes it leads aborts, and so will this one's once another takes over.
    let epoch = store
        .fence()
        .await
        .context("cannot take the leader epoch")?;
    leadership.guard(Arc::clone(&store));
    tracing::info!(epoch, "leader epoch taken");
    let keys = Keys::new(config.redis_prefix.clone());
    let queue = Arc::new(
        RedisQueue::connect(&config.redis_url, keys)
            .await
            .with_context(|| format!("cannot connect to Redis at {}", redact(&config.redis_url)))?,
    );
    let bus = Bus::new(BusConfig {
        ring_bytes: config.live_ring_bytes,
        answer_bytes: config.live_answer_bytes,
        ..BusConfig::default()
    });
    let engine_config = EngineConfig {
        worker_lost_after: Duration::from_secs(config.worker_lost_after_s),
        lease_timeout: Duration::from_secs_f64(config.lease_timeout_s),
        autoscale: config.autoscale(),
        max_task_input_bytes: config.max_task_input_bytes as usize,
        dispatch_slice: config.dispatch_slice as usize,
        run_backlog: config.run_backlog as usize,
        log_limits: engine::LogLimits {
            lines: config.max_log_lines_per_attempt,
            bytes: config.max_log_bytes_per_attempt,
        },
        max_queues: config.max_queues,
        queue_idle: Duration::from_secs(config.queue_idle_s),
        queues: config.queues.clone(),
        ceilings,
        ..EngineConfig::default()
    };
    // On threads of its own, so its long stretches of work do not hold up requests.
    let engine_runtime =
        engine::EngineRuntime::new().context("cannot start the engine's threads")?;
    let (engine, engine_task) = engine_runtime
        .spawn(engine::start(
            Arc::clone(&store),
            Arc::clone(&queue),
            bus.clone(),
            engine_config,
            shutdown_rx,
        ))
        .await
        .context("the engine's start-up ended abruptly")??;
    api::prometheus();
    let state = AppState {
        engine: engine.clone(),
        store: Arc::clone(&store),
        queue,
        bus,
        limits: Limits {
            max_tasks: config.max_tasks,
            providers,
            ..Limits::default()
        },
        browser,
        max_body_bytes: config.max_body_bytes,
        auth: api_token.map(|t| Arc::new(api::auth::Authenticator::new(Arc::clone(&store), &t))),
        max_inline_tasks: config.max_inline_tasks,
        websockets: api::WsSlots::new(config.max_websockets),
        request_timeout: config.request_timeout(),
        dashboard_dir: config.dashboard_dir.clone(),
        shutdown: shutdown.subscribe(),
        daily: Arc::new(api::daily::Daily::new(&config.daily)),
        run_docs: Arc::default(),
    };
    let _ticker = crate::ticker::spawn(state.clone(), shutdown.subscribe());
    let _retention = crate::retention::spawn(state.clone(), shutdown.subscribe());
    *slot.write() = Some(api::app(state));
    tracing::info!(%addr, "apex is serving");
    Ok(RunningServer {
        addr,
        shutdown,
        http,
        engine: engine_task,
        _engine_runtime: engine_runtime,
        leadership,
        handle: engine,
        store,
    })
}

fn serve(
    listener: tokio::net::TcpListener,
    slot: Slot,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<std::io::Result<()>> {
    let route = tower::service_fn(move |req: Request| {
        let router = slot.read().clone();
        async move {
            Ok::<_, std::convert::Infallible>(match router {
                Some(router) => router.oneshot(req).await.into_response(),
                None => standby(req).await,
            })
        }
    });
    // Connection info gives the auth layer each client's address, to throttle guessing.
    let app = Router::new()
        .fallback_service(route)
        .into_make_service_with_connect_info::<SocketAddr>();
    // Without TCP_NODELAY the tail of a live frame waits for the client's delayed ACK
    // (up to 40 ms on Linux) before it leaves: Nagle holds a partial segment while
    // earlier data is unacknowledged.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
    });
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await
    })
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// A URL with its password hidden, for messages.
pub fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((cred, host)) => {
                let user = cred.split(':').next().unwrap_or("");
                format!("{scheme}://{user}:***@{host}")
            }
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}
