//! What running Apex every day stores besides runs: versioned templates, schedules,
//! webhooks; and the queries that find runs by where they came from (idempotency key,
//! schedule) or by when they are due for deletion. Each store implements
//! [`DailyStore`] in a file of its own (`postgres_daily.rs`, `sqlite_daily.rs`).

use super::{RunRow, StoreError};
use async_trait::async_trait;
use serde_json::Value;

/// One stored version of a template.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateRow {
    pub name: String,
    pub version: u32,
    /// The DAG, with its `params` defaults, as PUT.
    pub spec: Value,
    pub created_at_ms: i64,
    pub created_by: String,
}

/// A schedule as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleRow {
    pub name: String,
    /// What was PUT: template, params, cron or every_s, timezone, overlap, catch_up.
    pub spec: Value,
    pub paused: bool,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// The last tick handled (fired or skipped on overlap).
    pub last_tick_ms: Option<i64>,
}

/// An incoming webhook: which template a signed request starts.
#[derive(Debug, Clone, PartialEq)]
pub struct HookRow {
    pub name: String,
    pub template: String,
    pub secret: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// Templates, schedules, hooks and run lookups by origin.
#[async_trait]
pub trait DailyStore: Send + Sync {
    /// The run submitted under this idempotency digest (token and key), created at or
    /// after `since_ms`.
    async fn run_by_idempotency(
        &self,
        digest: &str,
        since_ms: i64,
    ) -> Result<Option<RunRow>, StoreError>;

    /// Stores `spec` as the next version of template `name`; returns that version.
    async fn put_template(
        &self,
        name: &str,
        spec: &Value,
        by: &str,
        at_ms: i64,
    ) -> Result<u32, StoreError>;
    /// One version of a template, or its latest.
    async fn get_template(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<TemplateRow>, StoreError>;
    /// Every version of every template, by name then version.
    async fn list_templates(&self) -> Result<Vec<TemplateRow>, StoreError>;

    /// Creates or replaces a schedule (keeping its creation time and last tick); true
    /// when it is new.
    async fn put_schedule(&self, s: &ScheduleRow) -> Result<bool, StoreError>;
    async fn get_schedule(&self, name: &str) -> Result<Option<ScheduleRow>, StoreError>;
    async fn list_schedules(&self) -> Result<Vec<ScheduleRow>, StoreError>;
    /// False when there was no such schedule.
    async fn delete_schedule(&self, name: &str) -> Result<bool, StoreError>;
    /// False when there was no such schedule.
    async fn set_schedule_paused(
        &self,
        name: &str,
        paused: bool,
        at_ms: i64,
    ) -> Result<bool, StoreError>;
    /// Notes the last tick handled, never moving it back.
    async fn set_schedule_tick(&self, name: &str, tick_ms: i64) -> Result<(), StoreError>;
    /// The schedule's most recent runs, newest first.
    async fn schedule_runs(&self, name: &str, limit: u32) -> Result<Vec<RunRow>, StoreError>;

    /// Creates or replaces a hook; true when it is new.
    async fn put_hook(&self, h: &HookRow) -> Result<bool, StoreError>;
    async fn get_hook(&self, name: &str) -> Result<Option<HookRow>, StoreError>;
    async fn list_hooks(&self) -> Result<Vec<HookRow>, StoreError>;

    /// Up to `limit` finished runs due for deletion at `now_ms`, oldest first: those
    /// finished more than `keep_ms` ago (`None`: kept forever), or more than their own
    /// `ttl_s`.
    async fn due_runs(
        &self,
        now_ms: i64,
        keep_ms: Option<i64>,
        limit: u32,
    ) -> Result<Vec<String>, StoreError>;
    /// Deletes these runs, if finished, with their tasks and events, in one transaction.
    async fn delete_runs(&self, ids: &[String]) -> Result<Deleted, StoreError>;
}

/// Rows one deletion removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deleted {
    pub runs: u64,
    pub tasks: u64,
    pub events: u64,
}

use super::decode::Columns;

/// A row of `templates`.
pub(super) fn template(row: &impl Columns) -> Result<TemplateRow, StoreError> {
    Ok(TemplateRow {
        name: row.text("name")?,
        version: row.int_as("version")?,
        spec: row.json("spec")?,
        created_at_ms: row.int("created_at_ms")?,
        created_by: row.text("created_by")?,
    })
}

/// A row of `schedules`.
pub(super) fn schedule(row: &impl Columns) -> Result<ScheduleRow, StoreError> {
    Ok(ScheduleRow {
        name: row.text("name")?,
        spec: row.json("spec")?,
        paused: row.int("paused")? != 0,
        created_at_ms: row.int("created_at_ms")?,
        updated_at_ms: row.int("updated_at_ms")?,
        last_tick_ms: row.opt_int("last_tick_ms")?,
    })
}

/// A row of `hooks`.
pub(super) fn hook(row: &impl Columns) -> Result<HookRow, StoreError> {
    Ok(HookRow {
        name: row.text("name")?,
        template: row.text("template")?,
        secret: row.text("secret")?,
        created_at_ms: row.int("created_at_ms")?,
        updated_at_ms: row.int("updated_at_ms")?,
    })
}

/// Columns of `schedules` but `paused`, which each store reads as an integer.
pub(super) const SCHEDULE_COLUMNS: &str = "name, spec, created_at_ms, updated_at_ms, last_tick_ms";
