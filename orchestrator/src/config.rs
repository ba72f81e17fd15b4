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
    /// Bearer token the API and WebSocket require.
    #[arg(long, env = "APEX_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// Serve without authentication; refused unless bound to a loopback address.
    #[arg(long, env = "APEX_NO_AUTH")]
    pub no_auth: bool,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "APEX_MAX_BODY_BYTES", default_value_t = 64 << 20)]
    pub max_body_bytes: usize,
    /// Most bytes of input plus upstream outputs one task message may carry; a task over
    /// it fails before dispatch (`input_too_large`). At most 256 MiB (Redis refuses
    /// larger messages).
    #[arg(long, env = "APEX_MAX_TASK_INPUT_BYTES", default_value_t = 64 << 20, value_parser = clap::value_parser!(u64).range(1024..=(256 << 20)))]
    pub max_task_input_bytes: u64,
    /// Most tasks dispatched per write to the store and Redis: a run with more ready at
    /// once is dispatched in slices of this many, so the orchestrator's memory does not
    /// grow with the width of a run (the rest wait as `pending` meanwhile).
    #[arg(long, env = "APEX_DISPATCH_SLICE", default_value_t = 16_384, hide = true,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub dispatch_slice: u32,
    /// Most of a run's later slices that may wait in its queue at once, so a wide run
    /// does not fill a shared queue ahead of the runs submitted after it.
    #[arg(long, env = "APEX_RUN_BACKLOG", default_value_t = 4_096, hide = true,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub run_backlog: u32,
    /// Log lines one attempt may store; later ones are counted, not kept.
    #[arg(long, env = "APEX_MAX_LOG_LINES_PER_ATTEMPT", default_value_t = 1_000)]
    pub max_log_lines_per_attempt: u32,
    /// Log bytes one attempt may store (lines are cut at 64 KiB).
    #[arg(long, env = "APEX_MAX_LOG_BYTES_PER_ATTEMPT", default_value_t = 1 << 20)]
    pub max_log_bytes_per_attempt: usize,
    /// Most distinct queue names in use at once (each is a Redis stream, a consumer
    /// group and an autoscaler); a submission that would pass it is refused with 422.
    #[arg(long, env = "APEX_MAX_QUEUES", default_value_t = 1_000)]
    pub max_queues: usize,
    /// Seconds a queue may go without tasks, runs or workers before its stream and
    /// group are removed.
    #[arg(long, env = "APEX_QUEUE_IDLE_S", default_value_t = 600)]
    pub queue_idle_s: u64,
    /// Most tasks in one run.
    #[arg(long, env = "APEX_MAX_TASKS", default_value_t = 100_000)]
    pub max_tasks: usize,
    /// Most tasks `GET /api/v1/runs/{id}` and a run's WebSocket snapshot carry; a bigger
    /// run's are continued with `GET /api/v1/runs/{id}/tasks`.
    #[arg(long, env = "APEX_MAX_INLINE_TASKS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_inline_tasks: u32,
    /// Most WebSocket connections open at once; more are refused with 503.
    #[arg(long, env = "APEX_MAX_WEBSOCKETS", default_value_t = 10_000)]
    pub max_websockets: usize,
    /// Most bytes of recent fleet events (run summaries, workers, queues) kept so a
    /// WebSocket client can resume with `since`; older ones get a fresh snapshot.
    #[arg(long, env = "APEX_LIVE_RING_BYTES", default_value_t = 16 << 20)]
    pub live_ring_bytes: usize,
    /// Most bytes of streamed text kept per running attempt, so a client that connects
    /// mid-answer first gets the text so far; past it the oldest text is left out (the
    /// task's output still carries all of it).
    #[arg(long, env = "APEX_LIVE_ANSWER_BYTES", default_value_t = 256 << 10)]
    pub live_answer_bytes: usize,
    /// Seconds any request but a WebSocket may take before it is answered 503 `timeout`.
    #[arg(long, env = "APEX_REQUEST_TIMEOUT_S", default_value_t = 30.0,
          value_parser = positive_seconds)]
    pub request_timeout_s: f64,
    /// Idempotency, webhooks, schedules and retention.
    #[command(flatten)]
    pub daily: crate::config_daily::DailyConfig,
    /// Serve the dashboard from this built directory instead of the copy compiled into
    /// the binary (for dashboard development).
    #[arg(long, env = "APEX_DASHBOARD_DIR")]
    pub dashboard_dir: Option<PathBuf>,
    /// Seconds without a heartbeat after which a worker is presumed lost.
    #[arg(long, env = "APEX_WORKER_LOST_AFTER_S", default_value_t = 10)]
    pub worker_lost_after_s: u64,
    /// Seconds a running task may go without its worker renewing its lease before it
    /// is taken over and run again elsewhere; must exceed the workers' --lease-interval.
    #[arg(long, env = "APEX_LEASE_TIMEOUT_S", default_value_t = 7.0)]
    pub lease_timeout_s: f64,
    /// Fewest workers a queue should have, even when idle (`apex_workers_desired`).
    #[arg(long, env = "APEX_AUTOSCALE_MIN", default_value_t = 0)]
    pub autoscale_min: u32,
    /// Most workers a queue should have, whatever its backlog.
    #[arg(long, env = "APEX_AUTOSCALE_MAX", default_value_t = 100)]
    pub autoscale_max: u32,
    /// Seconds demand must stay lower before the desired worker count drops.
    #[arg(long, env = "APEX_AUTOSCALE_COOLDOWN_S", default_value_t = 60.0)]
    pub autoscale_cooldown_s: f64,
    /// Slots per worker assumed while no worker of a queue reports its concurrency.
    #[arg(long, env = "APEX_WORKER_SLOTS", default_value_t = 200)]
    pub worker_slots: u32,
    /// Host names (with port, e.g. `apex.example.com` or `10.0.0.5:8080`) the API answers
    /// to besides the bind address; on a loopback bind `localhost`, `127.0.0.1` and
    /// `[::1]` with the port are always accepted.
    #[arg(long, env = "APEX_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,
    /// Web origins (e.g. `https://ops.example.com`) whose pages may call the API, for a
    /// dashboard hosted elsewhere; the server's own origin is always allowed.
    #[arg(long, env = "APEX_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// The LLM providers runs may name (JSON, the same file the workers read; see
    /// python-workers/README.md) [default: openai, anthropic, mock].
    #[arg(long, env = "APEX_PROVIDERS_FILE")]
    pub providers_file: Option<PathBuf>,
    /// Ceilings on the limits runs share, per concurrency key or agent, that no run can
    /// loosen (JSON in the shape of a run's `concurrency_limits`, e.g.
    /// `{"provider:openai": {"max_concurrency": 8, "rpm": 500, "tpm": 200000},
    /// "agent:researcher": {"max_concurrency": 4}}`). A run's tasks that name a key
    /// (`concurrency_key` K, or `agent` NAME for `agent:NAME`) are held to the tighter of
    /// the run's limit and this one, whether the run sets one or not. See docs/API.md
    /// (Limits).
    #[arg(long, env = "APEX_CONCURRENCY_LIMITS_FILE")]
    pub concurrency_limits_file: Option<PathBuf>,
    /// Queues to report (and autoscale) from the start, before any task names them.
    #[arg(
        long = "queue",
        env = "APEX_QUEUES",
        value_delimiter = ',',
        default_value = "default"
    )]
    pub queues: Vec<String>,
}

/// A number of seconds above zero (and below a century, so it makes a `Duration`).
fn positive_seconds(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v < 3.2e9 => Ok(v),
        Ok(_) => Err("must be more than 0 seconds and less than a century".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Settings that cannot work together.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("no API token: set APEX_API_TOKEN (or --api-token), or pass --no-auth to serve without authentication on a loopback address")]
    MissingToken,
    #[error(
        "--no-auth is only allowed on a loopback address, not {0}: set APEX_API_TOKEN instead"
    )]
    NoAuthOffLoopback(SocketAddr),
    #[error("the API token is {0} characters long; use at least {MIN_TOKEN_LEN} (e.g. `openssl rand -hex 32`)")]
    WeakToken(usize),
}

/// Shorter tokens could be guessed.
pub const MIN_TOKEN_LEN: usize = 16;

impl ServeConfig {
    /// The autoscaling policy these settings describe.
    pub fn autoscale(&self) -> crate::autoscale::Policy {
        crate::autoscale::Policy {
            min: self.autoscale_min,
            max: self.autoscale_max,
            slots_per_worker: self.worker_slots.max(1),
            cooldown_ms: (self.autoscale_cooldown_s.max(0.0) * 1000.0) as i64,
        }
    }

    /// How long a request other than a WebSocket may take.
    pub fn request_timeout(&self) -> std::time::Duration {
        // The flag's parser admits only what makes a Duration; a value set in code that
        // does not gets the default.
        std::time::Duration::try_from_secs_f64(self.request_timeout_s)
            .ok()
            .filter(|d| !d.is_zero())
            .unwrap_or(std::time::Duration::from_secs(30))
    }

    /// The token the API requires, or `None` when auth is explicitly off on loopback.
    pub fn auth(&self) -> Result<Option<String>, ConfigError> {
        // A token pasted with its newline is still the token.
        match self
            .api_token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            Some(t) if t.chars().count() < MIN_TOKEN_LEN => {
                Err(ConfigError::WeakToken(t.chars().count()))
            }
            Some(t) => Ok(Some(t.to_owned())),
            None if self.no_auth && self.bind.ip().is_loopback() => Ok(None),
            None if self.no_auth => Err(ConfigError::NoAuthOffLoopback(self.bind)),
            None => Err(ConfigError::MissingToken),
        }
    }

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
            no_auth: true,
            max_body_bytes: 64 << 20,
            max_tasks: 100_000,
            max_task_input_bytes: 64 << 20,
            dispatch_slice: 16_384,
            run_backlog: 4_096,
            max_log_lines_per_attempt: 1_000,
            max_log_bytes_per_attempt: 1 << 20,
            max_queues: 1_000,
            queue_idle_s: 600,
            max_inline_tasks: 10_000,
            max_websockets: 10_000,
            live_ring_bytes: 16 << 20,
            live_answer_bytes: 256 << 10,
            request_timeout_s: 30.0,
            daily: Default::default(),
            dashboard_dir: None,
            worker_lost_after_s: 10,
            lease_timeout_s: 7.0,
            autoscale_min: 0,
            autoscale_max: 100,
            autoscale_cooldown_s: 60.0,
            worker_slots: 200,
            queues: vec!["default".into()],
            allowed_hosts: Vec::new(),
            cors_origins: Vec::new(),
            providers_file: None,
            concurrency_limits_file: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_is_required_unless_explicitly_off_on_loopback() {
        let mut c = ServeConfig::new("postgres://x", "redis://x", "p");
        assert_eq!(c.auth(), Ok(None));
        c.no_auth = false;
        assert_eq!(c.auth(), Err(ConfigError::MissingToken));
        c.api_token = Some("s3cret".into());
        assert_eq!(c.auth(), Err(ConfigError::WeakToken(6)));
        c.api_token = Some(" s3cret-s3cret-s3cret\n".into());
        assert_eq!(c.auth(), Ok(Some("s3cret-s3cret-s3cret".into())));
        c.api_token = None;
        c.no_auth = true;
        c.bind = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(c.auth(), Err(ConfigError::NoAuthOffLoopback(c.bind)));
    }
}
