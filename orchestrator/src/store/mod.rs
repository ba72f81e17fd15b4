//! Persistence: the source of truth for runs, tasks, their event log and workers, the
//! agent registry, API tokens and the audit log.
//!
//! The engine writes through [`Store::apply`] in batches (a group commit of everything a
//! few milliseconds of scheduling produced), never one round trip per task. The API
//! reads through the query methods. [`postgres::PgStore`] is the production store;
//! [`sqlite::SqliteStore`], one file and no server, is the embedded default.

pub mod daily;
mod decode;
mod generation;
pub mod leader;
pub mod postgres;
mod postgres_daily;
mod rows;
pub mod sqlite;
mod sqlite_daily;
mod text;

pub use generation::Generation;
pub use rows::*;

use async_trait::async_trait;

/// A store failure, split by what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached right now; try again later (HTTP 503).
    #[error("the store is unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// The database answered with an error.
    #[error("store query failed: {0}")]
    Query(#[source] sqlx::Error),
    /// A stored row could not be decoded (a bug or a hand-edited row).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("running migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database URL names a kind of store Apex does not have.
    #[error("unsupported database URL scheme {0:?}: use postgres://… or sqlite://…")]
    UnsupportedUrl(String),
    /// The database URL has a known scheme but cannot be used as written.
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    /// Another orchestrator took over since this one took its epoch: this one must not
    /// write again.
    #[error("another orchestrator took over (leader epoch {current}, this one holds {ours}); nothing was written")]
    Fenced { ours: i64, current: i64 },
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e),
            other => StoreError::Query(other),
        }
    }
}

impl StoreError {
    /// True when retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// Filters of the run list, newest first.
#[derive(Debug, Clone, Default)]
pub struct RunQuery {
    pub state: Option<String>,
    /// Only runs older than this run id (ids sort by creation time).
    pub before: Option<String>,
    pub limit: u32,
}

/// A page of one run's tasks, in their order in the run (`idx`).
#[derive(Debug, Clone, Default)]
pub struct TaskQuery {
    /// Only tasks in one of these states; empty for every state.
    pub states: Vec<crate::state_machine::TaskState>,
    /// Only tasks after this one (a cursor: the last task of the previous page).
    pub after: Option<String>,
    /// Only tasks whose row was written at or after this run sequence ([`TaskRow::rev`]);
    /// `None` for all.
    pub since: Option<u64>,
    pub limit: u32,
}

/// The first `limit` tasks, in run order, of pages each already in run order (one per
/// state of a [`TaskQuery`]): what one query over all those states would answer.
fn merge_pages(pages: Vec<Vec<StoredTask>>, limit: u32) -> Vec<StoredTask> {
    let mut all: Vec<StoredTask> = pages.into_iter().flatten().collect();
    all.sort_by_key(|t| t.row.idx);
    all.truncate(limit as usize);
    all
}

/// Opens the store a URL names, running its migrations: `postgres://…`, or
/// `sqlite://path/to/file.db` (relative), `sqlite:///abs/path.db`, `sqlite:file.db`
/// (the file and its directory are created if missing; `sqlite::memory:` is refused).
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    match url.split_once(':').map(|(scheme, _)| scheme) {
        Some("postgres" | "postgresql") => {
            Ok(std::sync::Arc::new(postgres::PgStore::connect(url).await?))
        }
        Some("sqlite") => Ok(std::sync::Arc::new(
            sqlite::SqliteStore::connect(url).await?,
        )),
        _ => Err(StoreError::UnsupportedUrl(
            url.split(':').next().unwrap_or(url).to_owned(),
        )),
    }
}

/// Where Apex keeps its state.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Writes one batch atomically: new runs with their tasks, task and run updates,
    /// events, workers.
    async fn apply(&self, batch: &WriteBatch) -> Result<(), StoreError>;
    /// Runs, newest first.
    async fn list_runs(&self, q: &RunQuery) -> Result<Vec<RunRow>, StoreError>;
    async fn get_run(&self, id: &str) -> Result<Option<RunRow>, StoreError>;
    /// Every task of a run, in submission order.
    async fn get_tasks(&self, run_id: &str) -> Result<Vec<StoredTask>, StoreError>;
    /// A page of a run's tasks in submission order, in one indexed query; an `after`
    /// that names no task of the run gives an empty page.
    async fn list_tasks(&self, run_id: &str, q: &TaskQuery) -> Result<Vec<StoredTask>, StoreError>;
    async fn get_task(&self, run_id: &str, task_id: &str)
        -> Result<Option<StoredTask>, StoreError>;
    /// The run's tasks among `task_ids`, in submission order, in one query; ids the run
    /// has no task of are left out.
    async fn get_tasks_by_id(
        &self,
        run_id: &str,
        task_ids: &[String],
    ) -> Result<Vec<StoredTask>, StoreError>;
    /// Stored events after `since`, in order, optionally of one task only.
    async fn events(
        &self,
        run_id: &str,
        since: u64,
        task_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<EventRow>, StoreError>;
    /// The run's own events (the run changing state, not its tasks), in order: who
    /// created, cancelled and retried it.
    async fn run_history(&self, run_id: &str) -> Result<Vec<EventRow>, StoreError>;
    /// Runs still running: what the engine must resume after a restart.
    async fn active_runs(&self) -> Result<Vec<RunRow>, StoreError>;
    async fn list_workers(&self) -> Result<Vec<WorkerRow>, StoreError>;
    /// Cheap round trip, for readiness.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Takes the next leader epoch (called by a new leader, holding the lock, before it
    /// reads anything); from then on every [`Store::apply`] checks it still holds it.
    async fn fence(&self) -> Result<i64, StoreError>;
    /// Whether the epoch this store took is still the current one.
    async fn holds_epoch(&self) -> Result<bool, StoreError>;
    /// Registered agents, by name.
    async fn list_agents(&self) -> Result<Vec<AgentRow>, StoreError>;
    async fn get_agent(&self, name: &str) -> Result<Option<AgentRow>, StoreError>;
    /// Registers or replaces an agent, and records the change as done `by` a token.
    /// Returns it as stored (a replaced agent keeps its `created_at_ms`) and whether it
    /// is new.
    async fn put_agent(&self, agent: &AgentRow, by: &str) -> Result<(AgentRow, bool), StoreError>;
    /// Removes an agent, recording who did; false when there was none.
    async fn delete_agent(&self, name: &str, by: &str, at_ms: i64) -> Result<bool, StoreError>;
    /// Stores a new API token and records its creation; false when the name is taken.
    async fn create_token(&self, token: &TokenRow) -> Result<bool, StoreError>;
    /// Every API token, by name.
    async fn list_tokens(&self) -> Result<Vec<TokenRow>, StoreError>;
    /// The token whose secret has this SHA-256 (lowercase hex).
    async fn find_token(&self, secret_sha256: &str) -> Result<Option<TokenRow>, StoreError>;
    /// Notes that a token was presented at `at_ms`.
    async fn touch_token(&self, name: &str, at_ms: i64) -> Result<(), StoreError>;
    /// Deletes an API token, recording who did; false when there was none.
    async fn revoke_token(&self, name: &str, by: &str, at_ms: i64) -> Result<bool, StoreError>;
    /// Audit records, newest first, optionally only those older than record `before`.
    async fn audit_log(&self, before: Option<i64>, limit: u32)
        -> Result<Vec<AuditRow>, StoreError>;
    /// Templates, schedules, hooks, and runs by origin (`store/daily.rs`).
    fn daily(&self) -> &dyn daily::DailyStore;
}
