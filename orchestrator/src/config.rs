//! Server settings: every one a flag with an environment variable behind it.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Settings of `apex serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeConfig {
    /// Address the API, WebSocket and dashboard listen on.
    #[arg(long, env = "APEX_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// Store: `postgres://…` (or `sqlite://…`).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// Redis carrying the queues.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// Namespace of every Redis key, so deployments and tests can share one Redis.
    #[arg(long, env = "APEX_REDIS_PREFIX", default_value = "apex")]
    pub redis_prefix: String,
    /// Bearer token the API requires; without one the API is open.
    #[arg(long, env = "APEX_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "APEX_MAX_BODY_BYTES", default_value_t = 64 << 20)]
    pub max_body_bytes: usize,
    /// Most tasks in one run.
    #[arg(long, env = "APEX_MAX_TASKS", default_value_t = 100_000)]
    pub max_tasks: usize,
    /// Built dashboard served at `/` (`npm run build` in dashboard/).
    #[arg(long, env = "APEX_DASHBOARD_DIR", default_value = "dashboard/dist")]
    pub dashboard_dir: PathBuf,
    /// Seconds without a heartbeat after which a worker is presumed lost.
    #[arg(long, env = "APEX_WORKER_LOST_AFTER_S", default_value_t = 10)]
    pub worker_lost_after_s: u64,
}

impl ServeConfig {
    /// Settings for a server against these services, everything else default (tests).
    pub fn new(
        database_url: impl Into<String>,
        redis_url: impl Into<String>,
        redis_prefix: impl Into<String>,
    ) -> Self {
        Self {
            bind: "127.0.0.1:0".parse().expect("valid address"),
            database_url: database_url.into(),
            redis_url: redis_url.into(),
            redis_prefix: redis_prefix.into(),
            api_token: None,
            max_body_bytes: 64 << 20,
            max_tasks: 100_000,
            dashboard_dir: PathBuf::from("dashboard/dist"),
            worker_lost_after_s: 10,
        }
    }
}
