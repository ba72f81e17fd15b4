//! The SQLite store: Apex's embedded default, one database file and no server to run.
//!
//! It answers exactly as [`super::postgres::PgStore`] does: the same rows, orders and
//! filters, and the same error classes (a busy, locked or unreachable database is
//! [`StoreError::Unavailable`], so the engine retries its commit). SQLite lets one
//! connection write at a time, so group commits go through a single writer connection,
//! each in one `begin immediate` transaction, while WAL lets the read pool answer the
//! API meanwhile. Rows go in multi-row statements of a few hundred rows each, well
//! under SQLite's bound-variable limit.

mod access;
mod codes;
mod options;
mod url;

pub(super) use url::create_parent_dir;
pub use url::database_path;

use super::decode::{self, EVENT_COLUMNS, RUN_COLUMNS, TASK_COLUMNS, TOKEN_COLUMNS};
pub(in crate::store) use codes::classify;
use url::options;

use super::*;
use crate::dag::TaskSpec;
use sqlx::query::Query;
use sqlx::sqlite::{
    Sqlite, SqliteArguments, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::ConnectOptions;
use std::time::Duration;

/// SQLite-backed [`Store`].
#[derive(Clone)]
pub struct SqliteStore {
    /// Reads for the API and recovery. In WAL mode they read a snapshot and never wait
    /// for the writer.
    pool: SqlitePool,
    /// The one connection group commits go through: SQLite admits one writer at a time,
    /// so more connections would only queue on its lock.
    writer: SqlitePool,
    /// The leader epoch this orchestrator took (0 before [`Store::fence`]: no check).
    epoch: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// How long a statement waits for another connection's lock before failing with
/// `SQLITE_BUSY` (then [`StoreError::Unavailable`], and the engine retries).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Most parameters one statement may bind: `SQLITE_MAX_VARIABLE_NUMBER` of the bundled
/// SQLite (32,766 since 3.32).
const MAX_VARIABLES: usize = 32_766;

/// Rows per multi-row statement. Measured on 20,000 tasks (insert; then update plus
/// 20,000 events): 158 ms and 209 ms at 200 rows, 175 ms and 252 ms at the variable
/// limit (2,340 task rows), 487 ms and over 600 ms one prepared row at a time.
const ROWS_PER_STATEMENT: usize = 200;

/// Read connections: enough for concurrent API requests on a small machine; each one is
/// a thread inside sqlx.
const READERS: u32 = 4;

impl SqliteStore {
    /// Opens (creating it and its directory if missing) the database a `sqlite:` URL
    /// names, and runs migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let opts = options(url)?;
        create_parent_dir(opts.get_filename())?;
        let opts = opts
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            .log_statements(tracing::log::LevelFilter::Trace)
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(2));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(opts.clone())
            .await
            .map_err(classify)?;
        MIGRATOR.run(&writer).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(READERS)
            .acquire_timeout(Duration::from_secs(5))
            // A guard: nothing may write behind the writer's back.
            .connect_with(opts.pragma("query_only", "on"))
            .await
            .map_err(classify)?;
        Ok(Self {
            pool,
            writer,
            epoch: std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0)),
        })
    }

    /// The read pool (for tests and health).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A transaction on the writer connection that holds the write lock from the start
    /// (rather than failing halfway when a read turns into a write).
    pub(super) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, Sqlite>, StoreError> {
        self.writer
            .begin_with("begin immediate")
            .await
            .map_err(classify)
    }
}

use super::text::json_text;

/// Appends to the audit log, in the transaction of the change it records.
async fn record(tx: &mut SqliteConnection, a: &AuditRow) -> Result<(), StoreError> {
    sqlx::query(
        "insert into audit_log (at_ms, actor, action, target, detail) values (?1, ?2, ?3, ?4, ?5)",
    )
    .bind(a.at_ms)
    .bind(a.by.as_str())
    .bind(a.action.as_str())
    .bind(a.target.as_str())
    .bind(a.detail.as_ref().map(json_text))
    .execute(tx)
    .await
    .map_err(classify)?;
    Ok(())
}

type SqliteQuery<'q> = Query<'q, Sqlite, SqliteArguments<'q>>;

/// One multi-row statement: `head` + `(?, …), (?, …)` + `tail`, each row `width`
/// parameters wide.
struct Rows {
    head: &'static str,
    width: usize,
    tail: &'static str,
}

impl Rows {
    /// Runs the statement over `rows`, [`ROWS_PER_STATEMENT`] at a time (fewer if the
    /// bound-variable limit says so); `bind` binds one row's values in column order.
    async fn execute<T>(
        &self,
        conn: &mut SqliteConnection,
        rows: &[T],
        bind: impl for<'q> Fn(SqliteQuery<'q>, &'q T) -> SqliteQuery<'q>,
    ) -> Result<(), StoreError> {
        for chunk in rows.chunks(self.rows_per_statement()) {
            let sql = self.sql(chunk.len());
            let mut q = sqlx::query(&sql);
            for row in chunk {
                q = bind(q, row);
            }
            q.execute(&mut *conn).await.map_err(classify)?;
        }
        Ok(())
    }

    fn rows_per_statement(&self) -> usize {
        ROWS_PER_STATEMENT.min(MAX_VARIABLES / self.width)
    }

    fn sql(&self, rows: usize) -> String {
        let tuple = format!("({})", vec!["?"; self.width].join(", "));
        let mut sql =
            String::with_capacity(self.head.len() + self.tail.len() + rows * (tuple.len() + 2));
        sql.push_str(self.head);
        for i in 0..rows {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&tuple);
        }
        sql.push_str(self.tail);
        sql
    }
}

const INSERT_RUNS: Rows = Rows {
    head: "insert into runs (id, name, queue, state, task_count, counts, error, created_at_ms, finished_at_ms, last_seq, options, usage, created_by) values ",
    width: 13,
    tail: "",
};
const INSERT_TASKS: Rows = Rows {
    head: "insert into tasks (run_id, task_id, idx, spec, state, attempt, failures, lost, output, error, worker_id, queued_at_ms, started_at_ms, finished_at_ms, usage, rev) values ",
    width: 16,
    tail: "",
};
const UPDATE_TASKS: Rows = Rows {
    head: "with u (r, t, st, a, f, l, o, e, w, q, sa, fa, us, rv) as (values ",
    width: 14,
    tail:
        ") update tasks set state = u.st, attempt = u.a, failures = u.f, lost = u.l, output = u.o,
             error = u.e, worker_id = u.w, queued_at_ms = u.q, started_at_ms = u.sa,
             finished_at_ms = u.fa, usage = u.us, rev = u.rv
         from u where tasks.run_id = u.r and tasks.task_id = u.t",
};
const INSERT_EVENTS: Rows = Rows {
    head: "insert into task_events (run_id, seq, task_id, kind, state, attempt, worker_id, at_ms, data, actor) values ",
    width: 10,
    tail: " on conflict (run_id, seq) do nothing",
};
const UPDATE_RUNS: Rows = Rows {
    head: "with u (id, state, counts, error, finished_at_ms, last_seq, usage) as (values ",
    width: 7,
    tail: ") update runs set state = u.state, counts = u.counts, error = u.error,
             finished_at_ms = u.finished_at_ms, last_seq = u.last_seq, usage = u.usage
         from u where runs.id = u.id",
};
const UPDATE_SPECS: Rows = Rows {
    head: "with u (r, t, s) as (values ",
    width: 3,
    tail: ") update tasks set spec = u.s from u where tasks.run_id = u.r and tasks.task_id = u.t",
};
const UPSERT_WORKERS: Rows = Rows {
    head: "insert into workers (id, info, state, last_heartbeat_ms) values ",
    width: 4,
    tail: " on conflict (id) do update set info = excluded.info, state = excluded.state,
             last_heartbeat_ms = excluded.last_heartbeat_ms",
};

/// Binds a task row's changing columns in the order of [`UPDATE_TASKS`] (after its two
/// keys), which the insert of new tasks shares from `state` on.
fn bind_task_state<'q>(q: SqliteQuery<'q>, t: &'q TaskRow) -> SqliteQuery<'q> {
    q.bind(t.state.as_str())
        .bind(i64::from(t.attempt))
        .bind(i64::from(t.failures))
        .bind(i64::from(t.lost))
        .bind(t.output.as_ref().map(json_text))
        .bind(t.error.as_ref().map(json_text))
        .bind(t.worker_id.as_deref().map(super::text::without_nul))
        .bind(t.queued_at_ms)
        .bind(t.started_at_ms)
        .bind(t.finished_at_ms)
        .bind(
            task_usage_json(&t.usage, &t.charges)
                .as_ref()
                .map(json_text),
        )
        .bind(t.rev as i64)
}

/// Inserts tasks with their specs: those of new runs, and those spawned into running ones.
async fn insert_tasks(
    conn: &mut SqliteConnection,
    tasks: &[(&TaskSpec, &TaskRow)],
) -> Result<(), StoreError> {
    INSERT_TASKS
        .execute(conn, tasks, |q, (spec, t)| {
            let q = q
                .bind(t.run_id.as_str())
                .bind(t.task_id.as_str())
                .bind(i64::from(t.idx))
                .bind(json_text(spec));
            bind_task_state(q, t)
        })
        .await
}

#[async_trait]
impl Store for SqliteStore {
    async fn apply(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        // Immediate: take the write lock now, waiting up to the busy timeout. Holding it,
        // the epoch read below cannot change before this transaction ends.
        let mut tx = self.begin_write().await?;
        let ours = self.epoch.load(std::sync::atomic::Ordering::Acquire);
        if ours != 0 {
            let (current,): (i64,) = sqlx::query_as("select epoch from leadership where id = 1")
                .fetch_one(&mut *tx)
                .await?;
            if current != ours {
                return Err(StoreError::Fenced { ours, current });
            }
        }
        if !batch.new_runs.is_empty() {
            INSERT_RUNS
                .execute(&mut tx, &batch.new_runs, |q, n| {
                    let r = &n.run;
                    q.bind(r.id.as_str())
                        .bind(r.name.as_str())
                        .bind(r.queue.as_str())
                        .bind(r.state.as_str())
                        .bind(i64::from(r.task_count))
                        .bind(json_text(&counts_map(&r.counts)))
                        .bind(r.error.as_deref())
                        .bind(r.created_at_ms)
                        .bind(r.finished_at_ms)
                        .bind(r.last_seq as i64)
                        .bind(json_text(&*r.options))
                        .bind(usage_json(&r.usage).as_ref().map(json_text))
                        .bind(r.created_by.as_deref())
                })
                .await?;
            let tasks: Vec<(&TaskSpec, &TaskRow)> =
                batch.new_runs.iter().flat_map(NewRun::tasks).collect();
            insert_tasks(&mut tx, &tasks).await?;
        }
        if !batch.new_tasks.is_empty() {
            let tasks: Vec<(&TaskSpec, &TaskRow)> =
                batch.new_tasks.iter().map(|(s, t)| (s, t)).collect();
            insert_tasks(&mut tx, &tasks).await?;
        }
        if !batch.specs.is_empty() {
            UPDATE_SPECS
                .execute(&mut tx, &batch.specs, |q, (run, spec)| {
                    q.bind(run.as_str())
                        .bind(spec.id.as_str())
                        .bind(json_text(spec))
                })
                .await?;
        }
        options::update_options(&mut tx, &batch.options).await?;
        if !batch.tasks.is_empty() {
            UPDATE_TASKS
                .execute(&mut tx, &batch.tasks, |q, t| {
                    bind_task_state(q.bind(t.run_id.as_str()).bind(t.task_id.as_str()), t)
                })
                .await?;
        }
        if !batch.events.is_empty() {
            INSERT_EVENTS
                .execute(&mut tx, &batch.events, |q, e| {
                    q.bind(e.run_id.as_str())
                        .bind(e.seq as i64)
                        .bind(e.task_id.as_deref())
                        .bind(e.kind.as_str())
                        .bind(e.state.as_deref())
                        .bind(i64::from(e.attempt))
                        .bind(e.worker_id.as_deref().map(super::text::without_nul))
                        .bind(e.at_ms)
                        .bind(e.data.as_ref().map(json_text))
                        .bind(e.by.as_deref())
                })
                .await?;
        }
        if !batch.runs.is_empty() {
            UPDATE_RUNS
                .execute(&mut tx, &batch.runs, |q, r| {
                    q.bind(r.id.as_str())
                        .bind(r.state.as_str())
                        .bind(json_text(&counts_map(&r.counts)))
                        .bind(r.error.as_deref())
                        .bind(r.finished_at_ms)
                        .bind(r.last_seq as i64)
                        .bind(usage_json(&r.usage).as_ref().map(json_text))
                })
                .await?;
        }
        if !batch.workers.is_empty() {
            UPSERT_WORKERS
                .execute(&mut tx, &batch.workers, |q, w| {
                    q.bind(w.id.as_str())
                        .bind(json_text(&w.info))
                        .bind(w.state.as_str())
                        .bind(w.last_heartbeat_ms)
                })
                .await?;
        }
        tx.commit().await.map_err(classify)?;
        Ok(())
    }

    async fn list_runs(&self, q: &RunQuery) -> Result<Vec<RunRow>, StoreError> {
        // As in Postgres: `(?1 is null or state = ?1)` keeps SQLite off `runs_by_state`.
        let state = if q.state.is_some() {
            "state = ?1"
        } else {
            "?1 is null"
        };
        let rows = sqlx::query(&format!(
            "select {RUN_COLUMNS} from runs
             where {state} and (?2 is null or id < ?2)
             order by id desc limit ?3"
        ))
        .bind(q.state.as_deref())
        .bind(q.before.as_deref())
        .bind(i64::from(q.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter().map(decode::run).collect()
    }

    async fn get_run(&self, id: &str) -> Result<Option<RunRow>, StoreError> {
        let row = sqlx::query(&format!("select {RUN_COLUMNS} from runs where id = ?1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.as_ref().map(decode::run).transpose()
    }

    async fn get_tasks(&self, run_id: &str) -> Result<Vec<StoredTask>, StoreError> {
        let rows = sqlx::query(&format!(
            "select {TASK_COLUMNS} from tasks where run_id = ?1 order by idx"
        ))
        .bind(run_id)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter().map(decode::task).collect()
    }

    async fn list_tasks(&self, run_id: &str, q: &TaskQuery) -> Result<Vec<StoredTask>, StoreError> {
        // As in Postgres: the cursor bounds an index scan (an unknown cursor bounds it at
        // null, so the page is empty), and a state filter merges each state's page, read
        // from the (run_id, state, idx) index.
        let after = "idx > case when ?2 is null then -1
                     else (select idx from tasks where run_id = ?1 and task_id = ?2) end";
        // Changed rows only: the same walk, skipping rows written before `since` (no
        // index on `rev`, which changes at every write). Without `since`, the statement
        // is the one it always was, so the plan of a plain page does not change.
        let changed = |n: u8| match q.since {
            Some(_) => format!(" and rev >= ?{n}"),
            None => String::new(),
        };
        let since = q.since.map(|s| s as i64);
        if q.states.is_empty() {
            let sql = format!(
                "select {TASK_COLUMNS} from tasks where run_id = ?1 and {after}{}
                 order by idx limit ?3",
                changed(4)
            );
            let rows = sqlx::query(&sql)
                .bind(run_id)
                .bind(q.after.as_deref())
                .bind(i64::from(q.limit));
            let rows = match since {
                Some(s) => rows.bind(s),
                None => rows,
            }
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
            return rows.iter().map(decode::task).collect();
        }
        let mut pages = Vec::with_capacity(q.states.len());
        for (i, state) in q.states.iter().enumerate() {
            if q.states[..i].contains(state) {
                continue;
            }
            let sql = format!(
                "select {TASK_COLUMNS} from tasks where run_id = ?1 and state = ?4 and {after}{}
                 order by idx limit ?3",
                changed(5)
            );
            let rows = sqlx::query(&sql)
                .bind(run_id)
                .bind(q.after.as_deref())
                .bind(i64::from(q.limit))
                .bind(state.as_str());
            let rows = match since {
                Some(s) => rows.bind(s),
                None => rows,
            }
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
            pages.push(
                rows.iter()
                    .map(decode::task)
                    .collect::<Result<Vec<_>, _>>()?,
            );
        }
        Ok(super::merge_pages(pages, q.limit))
    }

    async fn get_task(
        &self,
        run_id: &str,
        task_id: &str,
    ) -> Result<Option<StoredTask>, StoreError> {
        let row = sqlx::query(&format!(
            "select {TASK_COLUMNS} from tasks where run_id = ?1 and task_id = ?2"
        ))
        .bind(run_id)
        .bind(task_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        row.as_ref().map(decode::task).transpose()
    }

    async fn get_tasks_by_id(
        &self,
        run_id: &str,
        task_ids: &[String],
    ) -> Result<Vec<StoredTask>, StoreError> {
        // The ids as one JSON array rather than a placeholder each: one statement
        // whatever their number, each id still looked up in the (run_id, task_id) key.
        let ids = serde_json::Value::from(task_ids).to_string();
        let rows = sqlx::query(&format!(
            "select {TASK_COLUMNS} from tasks
             where run_id = ?1 and task_id in (select value from json_each(?2))
             order by idx"
        ))
        .bind(run_id)
        .bind(ids)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter().map(decode::task).collect()
    }

    async fn events(
        &self,
        run_id: &str,
        since: u64,
        task_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<EventRow>, StoreError> {
        // The task filter is added only when given, rather than written as
        // `(?4 is null or task_id = ?4)`, for which SQLite's planner cannot use the
        // index of a task's events.
        let by_task = if task_id.is_some() {
            "and task_id = ?4"
        } else {
            ""
        };
        let rows = sqlx::query(&format!(
            "select {EVENT_COLUMNS} from task_events
             where run_id = ?1 and seq > ?2 {by_task} order by seq limit ?3"
        ))
        .bind(run_id)
        .bind(since as i64)
        .bind(i64::from(limit))
        .bind(task_id)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter().map(decode::event).collect()
    }

    async fn run_history(&self, run_id: &str) -> Result<Vec<EventRow>, StoreError> {
        // `task_id is null` lets the index of tasks' events find the run's own.
        let rows = sqlx::query(&format!(
            "select {EVENT_COLUMNS} from task_events
             where run_id = ?1 and task_id is null and kind = 'run' order by seq"
        ))
        .bind(run_id)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter().map(decode::event).collect()
    }

    async fn active_runs(&self) -> Result<Vec<RunRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "select {RUN_COLUMNS} from runs where state = 'running' order by id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter().map(decode::run).collect()
    }

    async fn list_workers(&self) -> Result<Vec<WorkerRow>, StoreError> {
        let rows =
            sqlx::query("select id, info, state, last_heartbeat_ms from workers order by id")
                .fetch_all(&self.pool)
                .await
                .map_err(classify)?;
        rows.iter().map(decode::worker).collect()
    }

    async fn fence(&self) -> Result<i64, StoreError> {
        let (epoch,): (i64,) =
            sqlx::query_as("update leadership set epoch = epoch + 1 where id = 1 returning epoch")
                .fetch_one(&self.writer)
                .await?;
        self.epoch
            .store(epoch, std::sync::atomic::Ordering::Release);
        Ok(epoch)
    }

    async fn holds_epoch(&self) -> Result<bool, StoreError> {
        let (current,): (i64,) = sqlx::query_as("select epoch from leadership where id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(current == self.epoch.load(std::sync::atomic::Ordering::Acquire))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("select 1")
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn list_agents(&self) -> Result<Vec<AgentRow>, StoreError> {
        access::list_agents(self).await
    }

    async fn get_agent(&self, name: &str) -> Result<Option<AgentRow>, StoreError> {
        access::get_agent(self, name).await
    }

    async fn put_agent(&self, a: &AgentRow, by: &str) -> Result<(AgentRow, bool), StoreError> {
        access::put_agent(self, a, by).await
    }

    async fn delete_agent(&self, name: &str, by: &str, at_ms: i64) -> Result<bool, StoreError> {
        access::delete_agent(self, name, by, at_ms).await
    }

    async fn create_token(&self, t: &TokenRow) -> Result<bool, StoreError> {
        access::create_token(self, t).await
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        access::list_tokens(self).await
    }

    async fn find_token(&self, secret_sha256: &str) -> Result<Option<TokenRow>, StoreError> {
        access::find_token(self, secret_sha256).await
    }

    async fn touch_token(&self, name: &str, at_ms: i64) -> Result<(), StoreError> {
        access::touch_token(self, name, at_ms).await
    }

    async fn revoke_token(&self, name: &str, by: &str, at_ms: i64) -> Result<bool, StoreError> {
        access::revoke_token(self, name, by, at_ms).await
    }

    fn daily(&self) -> &dyn super::daily::DailyStore {
        self
    }

    async fn audit_log(
        &self,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditRow>, StoreError> {
        access::audit_log(self, before, limit).await
    }
}

#[cfg(test)]
#[path = "parity_tests.rs"]
mod tests;
