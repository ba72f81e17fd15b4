//! Settings of idempotent submission, webhooks in, schedules and retention: flattened
//! into `apex serve`'s flags, each with its environment variable.

/// The everyday-operation settings of `apex serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct DailyConfig {
    /// Hours an `Idempotency-Key` is remembered: a repeat within them answers the run
    /// it first created.
    #[arg(long, env = "APEX_IDEMPOTENCY_KEEP_HOURS", default_value_t = 24,
          value_parser = clap::value_parser!(u64).range(24..=24 * 366))]
    pub idempotency_keep_hours: u64,
    /// Largest body a webhook (`POST /api/v1/hooks/{name}`) may send, in bytes.
    #[arg(long, env = "APEX_HOOK_MAX_BODY_BYTES", default_value_t = 256 << 10)]
    pub hook_max_body_bytes: usize,
    /// Days a finished run is kept (with its tasks and events) before it is deleted; a
    /// run's own `ttl_s` overrides it. 0 keeps runs forever.
    #[arg(long, env = "APEX_RETAIN_FINISHED_DAYS", default_value_t = 30)]
    pub retain_finished_days: u64,
    /// Runs deleted per retention batch (each batch is one short transaction).
    #[arg(long, env = "APEX_RETENTION_BATCH", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub retention_batch: u32,
    /// Seconds between retention passes.
    #[arg(long, env = "APEX_RETENTION_INTERVAL_S", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub retention_interval_s: u64,
}

impl Default for DailyConfig {
    fn default() -> Self {
        Self {
            idempotency_keep_hours: 24,
            hook_max_body_bytes: 256 << 10,
            retain_finished_days: 30,
            retention_batch: 100,
            retention_interval_s: 60,
        }
    }
}
