//! What the everyday endpoints share (idempotency, templates, schedules, webhooks): the
//! in-flight keys and their settings, and the one path by which they start a run.

use super::error::ApiError;
use super::idempotency::Idempotency;
use super::AppState;
use crate::config_daily::DailyConfig;
use crate::dag::origin::RunOrigin;
use crate::dag::Dag;
use crate::store::RunRow;
use std::sync::Arc;
use std::time::Duration;

/// State of the everyday endpoints.
pub struct Daily {
    pub idempotency: Idempotency,
    pub hook_max_body_bytes: usize,
    /// Held by the ticker through each pass, and by pause and delete: once either
    /// answers, no tick of that schedule fires from an earlier read.
    pub schedules: tokio::sync::Mutex<()>,
    /// Held while runs are deleted, and while a run is re-run: a run is never loaded
    /// back to be re-run while it is being deleted.
    pub deletions: tokio::sync::Mutex<()>,
    /// How long finished runs are kept; `None`: forever.
    pub retain_finished_ms: Option<i64>,
    pub retention_batch: u32,
    pub retention_interval_s: u64,
}

/// Longest `ttl_s` a run may ask for: ten years.
pub const MAX_TTL_S: u64 = 10 * 366 * 86_400;

/// Refuses a `ttl_s` over [`MAX_TTL_S`], on submission and on `/validate` alike.
pub fn check_ttl(ttl_s: Option<u64>) -> Result<(), ApiError> {
    match ttl_s.filter(|t| *t > MAX_TTL_S) {
        Some(ttl) => Err(ApiError::BadRequest(format!(
            "ttl_s: {ttl} is over the limit of {MAX_TTL_S} s (ten years)"
        ))),
        None => Ok(()),
    }
}

impl Daily {
    /// From `apex serve`'s settings.
    pub fn new(config: &DailyConfig) -> Self {
        Self {
            idempotency: Idempotency::new(Duration::from_secs(
                config.idempotency_keep_hours * 3600,
            )),
            hook_max_body_bytes: config.hook_max_body_bytes,
            schedules: tokio::sync::Mutex::new(()),
            deletions: tokio::sync::Mutex::new(()),
            retain_finished_ms: (config.retain_finished_days > 0)
                .then(|| (config.retain_finished_days.min(1_000_000) as i64) * 86_400_000),
            retention_batch: config.retention_batch,
            retention_interval_s: config.retention_interval_s,
        }
    }
}

/// Parts of `b` fill what `a` leaves unset.
pub fn merge(a: RunOrigin, b: RunOrigin) -> RunOrigin {
    RunOrigin {
        template: a.template.or(b.template),
        schedule: a.schedule.or(b.schedule),
        tick_ms: a.tick_ms.or(b.tick_ms),
        hook: a.hook.or(b.hook),
        idempotency: a.idempotency.or(b.idempotency),
        request_sha256: a.request_sha256.or(b.request_sha256),
    }
}

/// Starts a validated DAG as a run recording `origin`, on behalf of token `by`: the
/// same path `POST /api/v1/runs` takes. Answers once the run is committed.
pub async fn start(
    state: &AppState,
    mut dag: Dag,
    origin: RunOrigin,
    by: &str,
) -> Result<RunRow, ApiError> {
    check_ttl(dag.options.ttl_s)?;
    if origin != RunOrigin::default() {
        Arc::make_mut(&mut dag.options).origin = Some(origin);
    }
    // A run is accepted only when it can be stored now; otherwise the caller is told
    // to come back rather than left waiting on an outage.
    let reachable = tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await;
    if !matches!(reachable, Ok(Ok(()))) {
        return Err(ApiError::Unavailable(
            "the store is unavailable; try again shortly".into(),
        ));
    }
    Ok(state.engine.submit(dag, by).await?)
}
