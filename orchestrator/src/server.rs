//! Assembles the running server: store, Redis, engine, HTTP.

use crate::api::{self, AppState};
use crate::bus::Bus;
use crate::config::ServeConfig;
use crate::dag::Limits;
use crate::engine::{self, EngineConfig};
use crate::queue::RedisQueue;
use crate::store::postgres::PgStore;
use crate::store::Store;
use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use worker_protocol::Keys;

/// A server running in this process.
pub struct RunningServer {
    /// Where it listens (the real port when bound to port 0).
    pub addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    http: JoinHandle<std::io::Result<()>>,
    engine: JoinHandle<()>,
}

impl RunningServer {
    /// Stops accepting requests, lets the engine write what it holds, and waits.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.http.await;
        let _ = self.engine.await;
    }

    /// Waits until the server stops on its own or `signal` fires, then stops it.
    pub async fn run_until(self, signal: impl std::future::Future<Output = ()>) {
        signal.await;
        tracing::info!("shutting down");
        self.stop().await;
    }
}

/// Connects to the store and Redis, recovers running runs, and starts serving.
pub async fn start(config: ServeConfig) -> anyhow::Result<RunningServer> {
    let store: Arc<dyn Store> = Arc::new(
        PgStore::connect(&config.database_url)
            .await
            .with_context(|| {
                format!("cannot open the store at {}", redact(&config.database_url))
            })?,
    );
    let keys = Keys::new(config.redis_prefix.clone());
    let queue = Arc::new(
        RedisQueue::connect(&config.redis_url, keys)
            .await
            .with_context(|| format!("cannot connect to Redis at {}", redact(&config.redis_url)))?,
    );
    let bus = Bus::new();
    let (shutdown, shutdown_rx) = watch::channel(false);
    let engine_config = EngineConfig {
        worker_lost_after: Duration::from_secs(config.worker_lost_after_s),
        ..EngineConfig::default()
    };
    let (engine, engine_task) = engine::start(
        Arc::clone(&store),
        Arc::clone(&queue),
        bus.clone(),
        engine_config,
        shutdown_rx.clone(),
    )
    .await?;
    api::prometheus();
    let state = AppState {
        engine,
        store,
        queue,
        bus,
        limits: Limits {
            max_tasks: config.max_tasks,
            ..Limits::default()
        },
        max_body_bytes: config.max_body_bytes,
        api_token: config.api_token.clone().filter(|t| !t.is_empty()),
        dashboard_dir: Some(config.dashboard_dir.clone()),
    };
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .with_context(|| format!("cannot listen on {}", config.bind))?;
    let addr = listener.local_addr()?;
    let mut stop = shutdown_rx;
    let http = tokio::spawn(async move {
        axum::serve(listener, api::app(state))
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await
    });
    tracing::info!(%addr, "apex is serving");
    Ok(RunningServer {
        addr,
        shutdown,
        http,
        engine: engine_task,
    })
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
