//! The SQLite store: Apex's embedded default, one database file and no server to run.
//!
//! It answers exactly as [`super::postgres::PgStore`] does: the same rows, orders and
//! filters, and the same error classes (a busy, locked or unreachable database is
//! [`StoreError::Unavailable`], so the engine retries its commit). SQLite lets one
//! connection write at a time, so group commits go through a single writer connection,
//! each in one `begin immediate` transaction, while WAL lets the read pool answer the
//! API meanwhile. Rows go in multi-row statements of a few hundred rows each, well
//! under SQLite's bound-variable limit.

use super::*;
use crate::access::Scope;
use crate::dag::TaskSpec;
use crate::state_machine::{RunState, TaskFailure, TaskState};
use serde_json::Value;
use sqlx::query::Query;
use sqlx::sqlite::{
    Sqlite, SqliteArguments, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool,
    SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Row};
use std::path::PathBuf;
use std::str::FromStr;
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
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Sqlite>, StoreError> {
        self.writer
            .begin_with("begin immediate")
            .await
            .map_err(classify)
    }
}

/// Connect options for a `sqlite:` URL: `sqlite://relative/path.db`,
/// `sqlite:///absolute/path.db` or `sqlite:path.db`, with sqlx's query parameters.
/// In-memory databases are refused: they vanish with their last connection and no
/// standby can share them.
fn options(url: &str) -> Result<SqliteConnectOptions, StoreError> {
    let rest = url
        .strip_prefix("sqlite:")
        .ok_or_else(|| StoreError::InvalidUrl(format!("{url:?} is not a sqlite: URL")))?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (path, params) = rest.split_once('?').unwrap_or((rest, ""));
    if path == ":memory:" || params.split('&').any(|p| p == "mode=memory") {
        return Err(StoreError::InvalidUrl(format!(
            "{url:?} is an in-memory SQLite database, which is lost when its last \
             connection closes and cannot be shared with a standby; name a file instead, \
             e.g. sqlite://.apex/apex.db"
        )));
    }
    if path.is_empty() {
        return Err(StoreError::InvalidUrl(format!(
            "{url:?} names no database file; e.g. sqlite://.apex/apex.db"
        )));
    }
    SqliteConnectOptions::from_str(url).map_err(|e| StoreError::InvalidUrl(format!("{url:?}: {e}")))
}

/// The database file a `sqlite:` URL names.
pub fn database_path(url: &str) -> Result<PathBuf, StoreError> {
    Ok(options(url)?.get_filename().to_owned())
}

/// Creates the directory a database (or lock) file goes in, if missing.
pub(super) fn create_parent_dir(file: &std::path::Path) -> Result<(), StoreError> {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Unavailable(sqlx::Error::Io(e)))
        }
        _ => Ok(()),
    }
}

/// Primary result codes (<https://www.sqlite.org/rescode.html>) that say the database
/// cannot be used right now rather than that the statement is wrong.
const TRANSIENT_CODES: [i32; 6] = [
    5,  // SQLITE_BUSY: another connection holds the lock past the busy timeout
    6,  // SQLITE_LOCKED
    10, // SQLITE_IOERR
    13, // SQLITE_FULL: the disk is full
    14, // SQLITE_CANTOPEN: the file or its directory is gone or unreadable
    15, // SQLITE_PROTOCOL: WAL locking raced
];
/// Primary result codes of a damaged database file.
const CORRUPT_CODES: [i32; 2] = [
    11, // SQLITE_CORRUPT
    26, // SQLITE_NOTADB
];

/// Classifies a sqlx error as [`StoreError::from`] does, plus what only SQLite says
/// through its result codes.
fn classify(e: sqlx::Error) -> StoreError {
    let primary = match &e {
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            // Extended result codes carry the primary one in their low byte.
            .map(|c| c & 0xff),
        _ => None,
    };
    match primary {
        Some(c) if TRANSIENT_CODES.contains(&c) => StoreError::Unavailable(e),
        Some(c) if CORRUPT_CODES.contains(&c) => StoreError::Corrupt(e.to_string()),
        _ => StoreError::from(e),
    }
}

use super::text::json_text;

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

/// A column's value; a missing column or one of the wrong type is corrupt data.
fn get<'r, T>(row: &'r SqliteRow, column: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>,
{
    row.try_get(column).map_err(|e| corrupt(column, e))
}

/// An integer column that must fit `T` (counts, attempts, sequence numbers).
fn get_int<T: TryFrom<i64>>(row: &SqliteRow, column: &str) -> Result<T, StoreError> {
    let v: i64 = get(row, column)?;
    T::try_from(v).map_err(|_| corrupt(column, format!("{v} is out of range")))
}

/// A JSON text column, parsed.
fn get_json(row: &SqliteRow, column: &str) -> Result<Option<Value>, StoreError> {
    get::<Option<String>>(row, column)?
        .map(|s| serde_json::from_str(&s).map_err(|e| corrupt(column, e)))
        .transpose()
}

fn run_from_row(row: &SqliteRow) -> Result<RunRow, StoreError> {
    let state: String = get(row, "state")?;
    let counts = get_json(row, "counts")?.ok_or_else(|| corrupt("counts", "null"))?;
    Ok(RunRow {
        id: get(row, "id")?,
        name: get(row, "name")?,
        queue: get(row, "queue")?,
        state: RunState::parse(&state).ok_or_else(|| corrupt("run state", &state))?,
        task_count: get_int(row, "task_count")?,
        counts: counts_from_json(&counts),
        error: get(row, "error")?,
        created_at_ms: get(row, "created_at_ms")?,
        finished_at_ms: get(row, "finished_at_ms")?,
        last_seq: get_int(row, "last_seq")?,
        options: get_json(row, "options")?
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| corrupt("run options", e))?
            .map(std::sync::Arc::new)
            .unwrap_or_default(),
        usage: usage_from_json(get_json(row, "usage")?),
        created_by: get(row, "created_by")?,
    })
}

fn task_from_row(row: &SqliteRow) -> Result<StoredTask, StoreError> {
    let spec = get_json(row, "spec")?.ok_or_else(|| corrupt("task spec", "null"))?;
    let state: String = get(row, "state")?;
    let (usage, charges) = task_usage_from_json(get_json(row, "usage")?);
    Ok(StoredTask {
        spec: serde_json::from_value::<TaskSpec>(spec).map_err(|e| corrupt("task spec", e))?,
        row: TaskRow {
            run_id: get(row, "run_id")?,
            task_id: get(row, "task_id")?,
            idx: get_int(row, "idx")?,
            state: TaskState::parse(&state).ok_or_else(|| corrupt("task state", &state))?,
            attempt: get_int(row, "attempt")?,
            failures: get_int(row, "failures")?,
            lost: get_int(row, "lost")?,
            output: get_json(row, "output")?,
            error: get_json(row, "error")?
                .map(serde_json::from_value::<TaskFailure>)
                .transpose()
                .map_err(|e| corrupt("task error", e))?,
            worker_id: get(row, "worker_id")?,
            queued_at_ms: get(row, "queued_at_ms")?,
            started_at_ms: get(row, "started_at_ms")?,
            finished_at_ms: get(row, "finished_at_ms")?,
            usage,
            charges,
        },
    })
}

fn event_from_row(row: &SqliteRow) -> Result<EventRow, StoreError> {
    Ok(EventRow {
        run_id: get(row, "run_id")?,
        seq: get_int(row, "seq")?,
        task_id: get(row, "task_id")?,
        kind: get(row, "kind")?,
        state: get(row, "state")?,
        attempt: get_int(row, "attempt")?,
        worker_id: get(row, "worker_id")?,
        at_ms: get(row, "at_ms")?,
        data: get_json(row, "data")?,
        by: get(row, "actor")?,
    })
}

fn worker_from_row(row: &SqliteRow) -> Result<WorkerRow, StoreError> {
    Ok(WorkerRow {
        id: get(row, "id")?,
        info: get_json(row, "info")?.ok_or_else(|| corrupt("worker info", "null"))?,
        state: get(row, "state")?,
        last_heartbeat_ms: get(row, "last_heartbeat_ms")?,
    })
}

const RUN_COLUMNS: &str = "id, name, queue, state, task_count, counts, error, created_at_ms, \
     finished_at_ms, last_seq, options, usage, created_by";
const TASK_COLUMNS: &str =
    "run_id, task_id, idx, spec, state, attempt, failures, lost, output, error, \
     worker_id, queued_at_ms, started_at_ms, finished_at_ms, usage";

fn agent_from_row(row: &SqliteRow) -> Result<AgentRow, StoreError> {
    let spec = get_json(row, "spec")?.ok_or_else(|| corrupt("agent spec", "null"))?;
    Ok(AgentRow {
        name: get(row, "name")?,
        spec: serde_json::from_value(spec).map_err(|e| corrupt("agent spec", e))?,
        created_at_ms: get(row, "created_at_ms")?,
        updated_at_ms: get(row, "updated_at_ms")?,
    })
}
const EVENT_COLUMNS: &str =
    "run_id, seq, task_id, kind, state, attempt, worker_id, at_ms, data, actor";

fn token_from_row(row: &SqliteRow) -> Result<TokenRow, StoreError> {
    let scope: String = get(row, "scope")?;
    Ok(TokenRow {
        name: get(row, "name")?,
        scope: Scope::parse(&scope).ok_or_else(|| corrupt("token scope", &scope))?,
        secret_sha256: get(row, "secret_sha256")?,
        created_at_ms: get(row, "created_at_ms")?,
        created_by: get(row, "created_by")?,
        last_used_at_ms: get(row, "last_used_at_ms")?,
    })
}

const TOKEN_COLUMNS: &str =
    "name, scope, secret_sha256, created_at_ms, created_by, last_used_at_ms";

fn audit_from_row(row: &SqliteRow) -> Result<AuditRow, StoreError> {
    let action: String = get(row, "action")?;
    Ok(AuditRow {
        id: get(row, "id")?,
        at_ms: get(row, "at_ms")?,
        by: get(row, "actor")?,
        action: AuditAction::parse(&action).ok_or_else(|| corrupt("audit action", &action))?,
        target: get(row, "target")?,
        detail: get_json(row, "detail")?,
    })
}

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
    head: "insert into tasks (run_id, task_id, idx, spec, state, attempt, failures, lost, output, error, worker_id, queued_at_ms, started_at_ms, finished_at_ms, usage) values ",
    width: 15,
    tail: "",
};
const UPDATE_TASKS: Rows = Rows {
    head: "with u (r, t, st, a, f, l, o, e, w, q, sa, fa, us) as (values ",
    width: 13,
    tail:
        ") update tasks set state = u.st, attempt = u.a, failures = u.f, lost = u.l, output = u.o,
             error = u.e, worker_id = u.w, queued_at_ms = u.q, started_at_ms = u.sa,
             finished_at_ms = u.fa, usage = u.us
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
}

/// Inserts tasks with their specs: those of new runs, and those spawned into running ones.
async fn insert_tasks(
    conn: &mut SqliteConnection,
    tasks: &[&(TaskSpec, TaskRow)],
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
            let tasks: Vec<&(TaskSpec, TaskRow)> =
                batch.new_runs.iter().flat_map(|n| &n.tasks).collect();
            insert_tasks(&mut tx, &tasks).await?;
        }
        if !batch.new_tasks.is_empty() {
            let tasks: Vec<&(TaskSpec, TaskRow)> = batch.new_tasks.iter().collect();
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
        let rows = sqlx::query(&format!(
            "select {RUN_COLUMNS} from runs
             where (?1 is null or state = ?1) and (?2 is null or id < ?2)
             order by id desc limit ?3"
        ))
        .bind(q.state.as_deref())
        .bind(q.before.as_deref())
        .bind(i64::from(q.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter().map(run_from_row).collect()
    }

    async fn get_run(&self, id: &str) -> Result<Option<RunRow>, StoreError> {
        let row = sqlx::query(&format!("select {RUN_COLUMNS} from runs where id = ?1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.as_ref().map(run_from_row).transpose()
    }

    async fn get_tasks(&self, run_id: &str) -> Result<Vec<StoredTask>, StoreError> {
        let rows = sqlx::query(&format!(
            "select {TASK_COLUMNS} from tasks where run_id = ?1 order by idx"
        ))
        .bind(run_id)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter().map(task_from_row).collect()
    }

    async fn list_tasks(&self, run_id: &str, q: &TaskQuery) -> Result<Vec<StoredTask>, StoreError> {
        // As in Postgres: the cursor bounds the (run_id, idx) index scan; an unknown
        // cursor bounds it at null, so the page is empty. States travel as a JSON array.
        let states = (!q.states.is_empty()).then(|| {
            serde_json::to_string(&q.states.iter().map(|s| s.as_str()).collect::<Vec<_>>())
                .unwrap_or_default()
        });
        let rows = sqlx::query(&format!(
            "select {TASK_COLUMNS} from tasks
             where run_id = ?1
               and idx > case when ?2 is null then -1
                         else (select idx from tasks where run_id = ?1 and task_id = ?2) end
               and (?3 is null or state in (select value from json_each(?3)))
             order by idx limit ?4"
        ))
        .bind(run_id)
        .bind(q.after.as_deref())
        .bind(states)
        .bind(i64::from(q.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter().map(task_from_row).collect()
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
        row.as_ref().map(task_from_row).transpose()
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
        rows.iter().map(event_from_row).collect()
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
        rows.iter().map(event_from_row).collect()
    }

    async fn active_runs(&self) -> Result<Vec<RunRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "select {RUN_COLUMNS} from runs where state = 'running' order by id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter().map(run_from_row).collect()
    }

    async fn list_workers(&self) -> Result<Vec<WorkerRow>, StoreError> {
        let rows =
            sqlx::query("select id, info, state, last_heartbeat_ms from workers order by id")
                .fetch_all(&self.pool)
                .await
                .map_err(classify)?;
        rows.iter().map(worker_from_row).collect()
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
        let rows = sqlx::query(
            "select name, spec, created_at_ms, updated_at_ms from agents order by name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter().map(agent_from_row).collect()
    }

    async fn get_agent(&self, name: &str) -> Result<Option<AgentRow>, StoreError> {
        let row = sqlx::query(
            "select name, spec, created_at_ms, updated_at_ms from agents where name = ?1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        row.as_ref().map(agent_from_row).transpose()
    }

    async fn put_agent(&self, a: &AgentRow, by: &str) -> Result<(AgentRow, bool), StoreError> {
        let mut tx = self.begin_write().await?;
        let created_at: Option<i64> =
            sqlx::query_scalar("select created_at_ms from agents where name = ?1")
                .bind(a.name.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(classify)?;
        sqlx::query(
            "insert into agents (name, spec, created_at_ms, updated_at_ms) values (?1, ?2, ?3, ?3)
             on conflict (name) do update set spec = excluded.spec, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(a.name.as_str())
        .bind(json_text(&a.spec))
        .bind(a.updated_at_ms)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        let created = created_at.is_none();
        let audit = AuditRow::new(AuditAction::AgentPut, by, &a.name, a.updated_at_ms)
            .with_detail(serde_json::json!({"created": created}));
        record(&mut tx, &audit).await?;
        tx.commit().await.map_err(classify)?;
        let stored = AgentRow {
            created_at_ms: created_at.unwrap_or(a.created_at_ms),
            ..a.clone()
        };
        Ok((stored, created))
    }

    async fn delete_agent(&self, name: &str, by: &str, at_ms: i64) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("delete from agents where name = ?1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        record(
            &mut tx,
            &AuditRow::new(AuditAction::AgentDelete, by, name, at_ms),
        )
        .await?;
        tx.commit().await.map_err(classify)?;
        Ok(true)
    }

    async fn create_token(&self, t: &TokenRow) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "insert into api_tokens (name, scope, secret_sha256, created_at_ms, created_by)
             values (?1, ?2, ?3, ?4, ?5) on conflict (name) do nothing",
        )
        .bind(t.name.as_str())
        .bind(t.scope.as_str())
        .bind(t.secret_sha256.as_str())
        .bind(t.created_at_ms)
        .bind(t.created_by.as_str())
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        let audit = AuditRow::new(
            AuditAction::TokenCreate,
            &t.created_by,
            &t.name,
            t.created_at_ms,
        )
        .with_detail(serde_json::json!({"scope": t.scope}));
        record(&mut tx, &audit).await?;
        tx.commit().await.map_err(classify)?;
        Ok(true)
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "select {TOKEN_COLUMNS} from api_tokens order by name"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter().map(token_from_row).collect()
    }

    async fn find_token(&self, secret_sha256: &str) -> Result<Option<TokenRow>, StoreError> {
        let row = sqlx::query(&format!(
            "select {TOKEN_COLUMNS} from api_tokens where secret_sha256 = ?1"
        ))
        .bind(secret_sha256)
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn touch_token(&self, name: &str, at_ms: i64) -> Result<(), StoreError> {
        sqlx::query(
            "update api_tokens set last_used_at_ms = ?2
             where name = ?1 and (last_used_at_ms is null or last_used_at_ms < ?2)",
        )
        .bind(name)
        .bind(at_ms)
        .execute(&self.writer)
        .await
        .map_err(classify)?;
        Ok(())
    }

    async fn revoke_token(&self, name: &str, by: &str, at_ms: i64) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("delete from api_tokens where name = ?1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        record(
            &mut tx,
            &AuditRow::new(AuditAction::TokenRevoke, by, name, at_ms),
        )
        .await?;
        tx.commit().await.map_err(classify)?;
        Ok(true)
    }

    async fn audit_log(
        &self,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let rows = sqlx::query(
            "select id, at_ms, actor, action, target, detail from audit_log
             where (?1 is null or id < ?1) order by id desc limit ?2",
        )
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter().map(audit_from_row).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state_machine::Usage;
    use crate::store::postgres::PgStore;
    use serde_json::json;

    /// A database file in a fresh directory, removed on drop.
    struct TempDb {
        dir: PathBuf,
        url: String,
    }

    impl TempDb {
        fn new() -> Self {
            let dir = std::env::temp_dir().join(format!("apex-sqlite-{}", uuid::Uuid::now_v7()));
            let url = format!("sqlite://{}/nested/apex.db", dir.display());
            Self { dir, url }
        }
    }

    impl Drop for TempDb {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn spec(i: usize) -> TaskSpec {
        let deps: Vec<String> = if i == 0 {
            vec![]
        } else {
            vec![format!("t{}", i - 1)]
        };
        serde_json::from_value(json!({
            "id": format!("t{i}"), "handler": "sum", "input": {"value": i, "note": "ünïcode ✓"},
            "depends_on": deps, "retries": 2, "timeout_s": 1.5,
        }))
        .unwrap()
    }

    fn task_row(run: &str, i: usize, state: TaskState) -> TaskRow {
        let done = state == TaskState::Succeeded;
        let failed = state == TaskState::Failed;
        // Odd finished tasks called a model; the rest report nothing.
        let called_model = (done || failed) && i % 2 == 1;
        let usage = Usage {
            input_tokens: 100 + i as u64,
            output_tokens: 40,
            cost_usd: 0.000125,
        };
        let mut charges = crate::state_machine::budget::Charges::default();
        if called_model {
            charges.report(1, &usage);
        }
        TaskRow {
            run_id: run.to_owned(),
            task_id: format!("t{i}"),
            idx: i as u32,
            state,
            attempt: u32::from(done || failed),
            failures: u32::from(failed),
            lost: 0,
            // Even tasks output a number, odd ones JSON null (which is not SQL null).
            output: done.then(|| [json!(i), Value::Null][i % 2].clone()),
            error: failed.then(|| TaskFailure {
                kind: "exception".into(),
                error_type: Some("ValueError".into()),
                message: "no".into(),
                traceback: None,
            }),
            worker_id: (done || failed).then(|| "w1".to_owned()),
            queued_at_ms: Some(1_000 + i as i64),
            started_at_ms: (done || failed).then_some(2_000),
            finished_at_ms: (done || failed).then_some(3_000 + i as i64),
            usage: if called_model {
                usage
            } else {
                Usage::default()
            },
            charges,
        }
    }

    fn run_row(id: &str, tasks: usize, state: RunState, seq: u64) -> RunRow {
        let mut counts = [0u32; 8];
        counts[TaskState::Queued as usize] = tasks as u32;
        RunRow {
            id: id.to_owned(),
            name: format!("run {id}"),
            queue: "default".into(),
            state,
            task_count: tasks as u32,
            counts,
            error: (state == RunState::Failed).then(|| "1 task(s) failed: t0".to_owned()),
            created_at_ms: 500,
            finished_at_ms: state.is_terminal().then_some(9_000),
            last_seq: seq,
            options: std::sync::Arc::new(serde_json::from_value(json!({
                "agents": {"writer": {"provider": "mock", "model": "m", "max_concurrency": 2,
                                      "price": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}}},
                "budget": {"max_tokens": 5000, "max_cost_usd": 0.25},
                "max_parallel": 3,
                "concurrency_limits": {"provider:mock": {"max_concurrency": 2, "rpm": 60}},
            }))
            .unwrap()),
            usage: Usage {
                input_tokens: seq * 10,
                output_tokens: seq,
                cost_usd: seq as f64 / 1_000.0,
            },
            created_by: Some("ci".into()),
        }
    }

    fn new_run(id: &str, tasks: usize) -> NewRun {
        NewRun {
            run: run_row(id, tasks, RunState::Running, 0),
            tasks: (0..tasks)
                .map(|i| (spec(i), task_row(id, i, TaskState::Queued)))
                .collect(),
        }
    }

    fn event(run: &str, seq: u64, task: Option<usize>, state: &str) -> EventRow {
        EventRow {
            run_id: run.to_owned(),
            seq,
            task_id: task.map(|i| format!("t{i}")),
            kind: if task.is_some() { "task" } else { "run" }.into(),
            state: Some(state.into()),
            attempt: 1,
            worker_id: task.map(|_| "w1".to_owned()),
            at_ms: 4_000 + seq as i64,
            data: (state == "failed").then(|| json!({"kind": "exception", "message": "no"})),
            // Run events were caused by API calls; task events by workers.
            by: task.is_none().then(|| "ops".to_owned()),
        }
    }

    fn worker(id: &str, state: &str, hb: i64) -> WorkerRow {
        WorkerRow {
            id: id.to_owned(),
            info: json!({"id": id, "host": "h", "queues": ["default"], "concurrency": 10}),
            state: state.into(),
            last_heartbeat_ms: hb,
        }
    }

    /// Three runs' lives in batches: submitted, progressing, finished (one failed, one
    /// succeeded, one still running), with events (one replayed) and workers (one
    /// updated).
    fn history(ids: &[String; 3]) -> Vec<WriteBatch> {
        let [a, b, c] = ids;
        let mut batches = vec![WriteBatch {
            new_runs: vec![new_run(a, 4), new_run(b, 3)],
            workers: vec![worker("w2", "running", 10), worker("w1", "running", 11)],
            ..Default::default()
        }];
        batches.push(WriteBatch {
            new_runs: vec![new_run(c, 2)],
            tasks: vec![
                task_row(a, 0, TaskState::Succeeded),
                task_row(a, 1, TaskState::Failed),
                task_row(b, 0, TaskState::Succeeded),
            ],
            events: vec![
                event(a, 1, Some(0), "succeeded"),
                event(a, 2, Some(1), "failed"),
                event(b, 1, Some(0), "succeeded"),
            ],
            runs: vec![
                run_row(a, 4, RunState::Running, 2),
                run_row(b, 3, RunState::Running, 1),
            ],
            workers: vec![worker("w1", "draining", 20)],
            ..Default::default()
        });

        batches.push(WriteBatch {
            tasks: vec![
                task_row(a, 2, TaskState::Succeeded),
                task_row(a, 3, TaskState::Skipped),
                task_row(b, 1, TaskState::Succeeded),
                task_row(b, 2, TaskState::Succeeded),
            ],
            events: vec![
                // Replayed after a retried commit: ignored.
                event(a, 2, Some(1), "failed"),
                event(a, 3, Some(2), "succeeded"),
                event(a, 4, Some(3), "skipped"),
                event(a, 5, None, "failed"),
                event(b, 2, Some(1), "succeeded"),
                event(b, 3, Some(2), "succeeded"),
                event(b, 4, None, "succeeded"),
            ],
            runs: vec![
                run_row(a, 4, RunState::Failed, 5),
                run_row(b, 3, RunState::Succeeded, 4),
            ],
            ..Default::default()
        });
        // t0 of run c spawns t9; t0's dependent t1 now waits on t9 too.
        let mut child = spec(9);
        child.depends_on = vec!["t0".into()];
        child.parent = Some("t0".into());
        let mut grown = spec(1);
        grown.depends_on.push("t9".into());
        batches.push(WriteBatch {
            new_tasks: vec![(child, task_row(c, 9, TaskState::Pending))],
            specs: vec![(c.clone(), grown)],
            tasks: vec![task_row(c, 0, TaskState::Succeeded)],
            ..Default::default()
        });
        batches
    }

    /// Registers, replaces and deletes agents; answers what the registry then holds.
    async fn agent_answers(store: &dyn Store) -> (bool, bool, bool, bool, Vec<AgentRow>) {
        let agent = |name: &str, model: &str, at: i64| AgentRow {
            name: name.into(),
            spec: serde_json::from_value(json!({"provider": "openai", "model": model,
                "temperature": 0.5}))
            .unwrap(),
            created_at_ms: at,
            updated_at_ms: at,
        };
        let (_, created) = store.put_agent(&agent("b", "m1", 10), "ops").await.unwrap();
        let (stored, replaced) = store.put_agent(&agent("b", "m2", 20), "ops").await.unwrap();
        assert_eq!((stored.created_at_ms, stored.updated_at_ms), (10, 20));
        store
            .put_agent(&agent("a", "m3", 30), "admin")
            .await
            .unwrap();
        store
            .put_agent(&agent("gone", "m", 40), "admin")
            .await
            .unwrap();
        let deleted = store.delete_agent("gone", "ops", 50).await.unwrap();
        let deleted_again = store.delete_agent("gone", "ops", 60).await.unwrap();
        assert_eq!(
            store.get_agent("b").await.unwrap().unwrap().spec.model,
            "m2"
        );
        assert!(store.get_agent("nope").await.unwrap().is_none());
        let mut agents = store.list_agents().await.unwrap();
        agents.retain(|a| ["a", "b"].contains(&a.name.as_str()));
        (created, replaced, deleted, deleted_again, agents)
    }

    /// What the token and audit tables answer after tokens are made, used and revoked.
    #[derive(Debug, PartialEq)]
    struct TokenAnswers {
        created: Vec<bool>,
        found: Vec<Option<TokenRow>>,
        revoked: Vec<bool>,
        tokens: Vec<TokenRow>,
        /// The audit log without its ids, which the two stores number alike only by
        /// chance of history; in pages of 3 and of all.
        audit: Vec<Vec<AuditRow>>,
    }

    async fn token_answers(store: &dyn Store) -> TokenAnswers {
        let token = |name: &str, scope, hash: &str, at| TokenRow {
            name: name.into(),
            scope,
            secret_sha256: hash.into(),
            created_at_ms: at,
            created_by: "admin".into(),
            last_used_at_ms: None,
        };
        let mut created = vec![];
        for t in [
            token("ci", Scope::Read, "aa", 100),
            token("deploy", Scope::Operate, "bb", 110),
            token("ci", Scope::Admin, "cc", 120),
            token("old", Scope::Submit, "dd", 130),
        ] {
            created.push(store.create_token(&t).await.unwrap());
        }
        store.touch_token("ci", 200).await.unwrap();
        store.touch_token("ci", 150).await.unwrap();
        let revoked = vec![
            store.revoke_token("old", "deploy", 300).await.unwrap(),
            store.revoke_token("old", "deploy", 310).await.unwrap(),
        ];
        let mut found = vec![];
        for hash in ["aa", "bb", "cc", "dd"] {
            found.push(store.find_token(hash).await.unwrap());
        }
        let all = store.audit_log(None, 100).await.unwrap();
        let mut audit = vec![all.clone(), store.audit_log(None, 3).await.unwrap()];
        audit.push(store.audit_log(Some(all[2].id), 100).await.unwrap());
        for page in &mut audit {
            page.iter_mut().for_each(|a| a.id = 0);
        }
        TokenAnswers {
            created,
            found,
            revoked,
            tokens: store.list_tokens().await.unwrap(),
            audit,
        }
    }

    /// Everything the store answers about the runs `ids`.
    #[derive(Debug, PartialEq)]
    struct Answers {
        lists: Vec<Vec<RunRow>>,
        runs: Vec<Option<RunRow>>,
        tasks: Vec<Vec<StoredTask>>,
        task: Vec<Option<StoredTask>>,
        events: Vec<Vec<EventRow>>,
        history: Vec<Vec<EventRow>>,
        active: Vec<RunRow>,
        workers: Vec<WorkerRow>,
    }

    async fn answers(store: &dyn Store, ids: &[String; 3]) -> Answers {
        let query = |state: Option<&str>, before: Option<&String>, limit| RunQuery {
            state: state.map(str::to_owned),
            before: before.cloned(),
            limit,
        };
        let mut lists = vec![];
        for q in [
            query(None, None, 50),
            query(None, None, 2),
            query(None, None, 0),
            query(Some("failed"), None, 50),
            query(Some("running"), None, 50),
            query(None, Some(&ids[2]), 50),
            query(Some("succeeded"), Some(&ids[2]), 50),
            query(Some("succeeded"), Some(&ids[1]), 50),
        ] {
            lists.push(store.list_runs(&q).await.unwrap());
        }
        let mut runs = vec![];
        let mut tasks = vec![];
        let mut task = vec![];
        let mut events = vec![];
        let mut history = vec![];
        for id in ids.iter().chain([&"nope".to_owned()]) {
            history.push(store.run_history(id).await.unwrap());
            runs.push(store.get_run(id).await.unwrap());
            tasks.push(store.get_tasks(id).await.unwrap());
            task.push(store.get_task(id, "t1").await.unwrap());
            task.push(store.get_task(id, "t9").await.unwrap());
            events.push(store.events(id, 0, None, 100).await.unwrap());
            events.push(store.events(id, 2, None, 100).await.unwrap());
            events.push(store.events(id, 0, None, 2).await.unwrap());
            events.push(store.events(id, 0, Some("t1"), 100).await.unwrap());
            events.push(store.events(id, 2, Some("t1"), 100).await.unwrap());
        }
        Answers {
            lists,
            runs,
            tasks,
            task,
            events,
            history,
            active: store.active_runs().await.unwrap(),
            workers: store.list_workers().await.unwrap(),
        }
    }

    fn run_ids() -> [String; 3] {
        std::array::from_fn(|_| uuid::Uuid::now_v7().to_string())
    }

    #[test]
    fn urls_name_files_relative_absolute_or_bare_and_never_memory() {
        let path = |url| database_path(url).map(|p| p.display().to_string());
        assert_eq!(path("sqlite://.apex/apex.db").unwrap(), ".apex/apex.db");
        assert_eq!(
            path("sqlite:///var/lib/apex.db").unwrap(),
            "/var/lib/apex.db"
        );
        assert_eq!(path("sqlite:apex.db").unwrap(), "apex.db");
        assert_eq!(path("sqlite://apex.db?mode=rwc").unwrap(), "apex.db");
        for bad in [
            "sqlite::memory:",
            "sqlite://:memory:",
            "sqlite://?mode=memory",
            "sqlite://",
        ] {
            let err = database_path(bad).unwrap_err();
            assert!(matches!(err, StoreError::InvalidUrl(_)), "{bad}: {err}");
        }
        let err = database_path("sqlite::memory:").unwrap_err().to_string();
        assert!(
            err.contains("in-memory") && err.contains("sqlite://.apex/apex.db"),
            "{err}"
        );
    }

    #[test]
    fn multi_row_statements_stay_under_the_bound_variable_limit() {
        for rows in [
            INSERT_RUNS,
            INSERT_TASKS,
            UPDATE_TASKS,
            INSERT_EVENTS,
            UPDATE_RUNS,
            UPDATE_SPECS,
            UPSERT_WORKERS,
        ] {
            let per_statement = rows.rows_per_statement();
            let sql = rows.sql(per_statement);
            assert_eq!(sql.matches('?').count(), per_statement * rows.width);
            assert!(sql.matches('?').count() <= MAX_VARIABLES);
            let widest = Rows {
                width: MAX_VARIABLES / 100,
                ..rows
            };
            assert!(widest.rows_per_statement() * widest.width <= MAX_VARIABLES);
        }
        assert_eq!(
            UPDATE_TASKS
                .sql(2)
                .matches("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
                .count(),
            2
        );
    }

    #[tokio::test]
    async fn open_creates_the_directory_and_a_wal_database_with_foreign_keys() {
        let db = TempDb::new();
        let store = open(&db.url).await.unwrap();
        store.ping().await.unwrap();
        let sqlite = SqliteStore::connect(&db.url).await.unwrap();
        let (mode,): (String,) = sqlx::query_as("pragma journal_mode")
            .fetch_one(sqlite.pool())
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        let (fk,): (i64,) = sqlx::query_as("pragma foreign_keys")
            .fetch_one(sqlite.pool())
            .await
            .unwrap();
        assert_eq!(fk, 1);
        // An event of a run that does not exist is refused, as by Postgres.
        let orphan = WriteBatch {
            events: vec![event("nope", 1, None, "running")],
            ..Default::default()
        };
        let err = sqlite.apply(&orphan).await.unwrap_err();
        assert!(matches!(err, StoreError::Query(_)), "{err}");
    }

    #[tokio::test]
    async fn answers_match_postgres_after_the_same_batches() {
        const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";
        let name = format!("apex_sqlite_parity_{}", uuid::Uuid::new_v4().simple());
        let admin = sqlx::PgPool::connect(PG_ADMIN)
            .await
            .expect("Postgres is reachable");
        sqlx::query(&format!("create database {name}"))
            .execute(&admin)
            .await
            .unwrap();
        let pg = PgStore::connect(&format!("postgres://postgres@127.0.0.1:5432/{name}"))
            .await
            .unwrap();
        let db = TempDb::new();
        let sqlite = SqliteStore::connect(&db.url).await.unwrap();

        let ids = run_ids();
        for batch in history(&ids) {
            pg.apply(&batch).await.unwrap();
            sqlite.apply(&batch).await.unwrap();
        }
        let from_pg = answers(&pg, &ids).await;
        let from_sqlite = answers(&sqlite, &ids).await;
        let agents_pg = agent_answers(&pg).await;
        let agents_sqlite = agent_answers(&sqlite).await;
        let tokens_pg = token_answers(&pg).await;
        let tokens_sqlite = token_answers(&sqlite).await;
        pg.pool().close().await;
        sqlx::query(&format!("drop database {name} with (force)"))
            .execute(&admin)
            .await
            .unwrap();
        assert_eq!(from_sqlite, from_pg);
        // And the answers are what was written, not merely the same mistakes.
        assert_eq!(from_sqlite.lists[0].len(), 3);
        assert_eq!(
            from_sqlite.active,
            vec![run_row(&ids[2], 2, RunState::Running, 0)]
        );
        assert_eq!(
            from_sqlite.tasks[0][1].row,
            task_row(&ids[0], 1, TaskState::Failed)
        );
        assert_eq!(from_sqlite.tasks[0][1].spec, spec(1));
        assert_eq!(from_sqlite.events[0].len(), 5);
        assert_eq!(from_sqlite.workers[0], worker("w1", "draining", 20));
        // Usage and options survive; a spawned task is stored and its parent's
        // dependents' specs changed.
        assert_eq!(
            from_sqlite.runs[0],
            Some(run_row(&ids[0], 4, RunState::Failed, 5))
        );
        assert_eq!(from_sqlite.tasks[2].len(), 3);
        assert_eq!(from_sqlite.tasks[2][2].spec.parent.as_deref(), Some("t0"));
        assert_eq!(from_sqlite.tasks[2][1].spec.depends_on, ["t0", "t9"]);
        assert_eq!(agents_sqlite, agents_pg);
        let (created, replaced, deleted, deleted_again, agents) = agents_sqlite;
        assert!(created && !replaced && deleted && !deleted_again);
        assert_eq!(agents.len(), 2);
        assert_eq!((agents[1].created_at_ms, agents[1].updated_at_ms), (10, 20));
        // Runs keep who created them; the run's own events, who caused them.
        assert_eq!(
            from_sqlite.runs[0].as_ref().unwrap().created_by.as_deref(),
            Some("ci")
        );
        assert_eq!(from_sqlite.history[0].len(), 1);
        assert_eq!(from_sqlite.history[0][0].by.as_deref(), Some("ops"));
        assert_eq!(from_sqlite.history[3], vec![]);
        assert_eq!(tokens_sqlite, tokens_pg);
        let t = tokens_sqlite;
        assert_eq!(t.created, [true, true, false, true]);
        assert_eq!(t.revoked, [true, false]);
        let names: Vec<&str> = t.tokens.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["ci", "deploy"]);
        assert_eq!(
            t.tokens[0].scope,
            Scope::Read,
            "a taken name keeps its token"
        );
        assert_eq!(
            t.tokens[0].last_used_at_ms,
            Some(200),
            "last use never goes back"
        );
        assert_eq!(t.found[1].as_ref().map(|t| t.scope), Some(Scope::Operate));
        assert_eq!((t.found[2].is_none(), t.found[3].is_none()), (true, true));
        // The agents' changes, then the tokens': newest first.
        let actions: Vec<(&str, &str, &str)> = t.audit[0]
            .iter()
            .map(|a| (a.action.as_str(), a.by.as_str(), a.target.as_str()))
            .collect();
        assert_eq!(
            actions,
            [
                ("token.revoke", "deploy", "old"),
                ("token.create", "admin", "old"),
                ("token.create", "admin", "deploy"),
                ("token.create", "admin", "ci"),
                ("agent.delete", "ops", "gone"),
                ("agent.put", "admin", "gone"),
                ("agent.put", "admin", "a"),
                ("agent.put", "ops", "b"),
                ("agent.put", "ops", "b"),
            ]
        );
        assert_eq!(t.audit[0][1].detail, Some(json!({"scope": "submit"})));
        assert_eq!(t.audit[0][8].detail, Some(json!({"created": true})));
        assert_eq!(t.audit[0][7].detail, Some(json!({"created": false})));
        assert_eq!(t.audit[1], t.audit[0][..3]);
        assert_eq!(t.audit[2], t.audit[0][3..]);
    }

    #[tokio::test]
    async fn a_batch_wider_than_one_statement_is_written_whole() {
        let db = TempDb::new();
        let store = SqliteStore::connect(&db.url).await.unwrap();
        let id = uuid::Uuid::now_v7().to_string();
        // 4,950 tasks: 25 statements, the last one short of 200 rows.
        let n = 4_950;
        store
            .apply(&WriteBatch {
                new_runs: vec![new_run(&id, n)],
                ..Default::default()
            })
            .await
            .unwrap();
        store
            .apply(&WriteBatch {
                tasks: (0..n)
                    .map(|i| task_row(&id, i, TaskState::Succeeded))
                    .collect(),
                events: (0..n)
                    .map(|i| event(&id, i as u64 + 1, Some(i), "succeeded"))
                    .collect(),
                ..Default::default()
            })
            .await
            .unwrap();
        let tasks = store.get_tasks(&id).await.unwrap();
        assert_eq!(tasks.len(), n);
        assert!(tasks
            .iter()
            .enumerate()
            .all(|(i, t)| t.row == task_row(&id, i, TaskState::Succeeded)));
        assert_eq!(store.events(&id, 0, None, 100_000).await.unwrap().len(), n);
    }

    #[tokio::test]
    async fn a_locked_database_is_unavailable_and_a_damaged_row_corrupt() {
        let db = TempDb::new();
        let store = SqliteStore::connect(&db.url).await.unwrap();
        let id = uuid::Uuid::now_v7().to_string();
        store
            .apply(&WriteBatch {
                new_runs: vec![new_run(&id, 2)],
                ..Default::default()
            })
            .await
            .unwrap();

        // Another connection holds the write lock; one that will not wait is refused.
        let opts = options(&db.url).unwrap();
        let mut holder = opts.clone().connect().await.unwrap();
        sqlx::query("begin immediate")
            .execute(&mut holder)
            .await
            .unwrap();
        let mut impatient = opts.busy_timeout(Duration::ZERO).connect().await.unwrap();
        let busy = sqlx::query("begin immediate")
            .execute(&mut impatient)
            .await
            .unwrap_err();
        let busy = classify(busy);
        assert!(busy.is_transient(), "{busy}");
        sqlx::query("rollback").execute(&mut holder).await.unwrap();

        // A hand-edited row the store cannot read back.
        sqlx::query("update tasks set state = 'lost_in_space' where task_id = 't0'")
            .execute(&mut impatient)
            .await
            .unwrap();
        sqlx::query("update tasks set spec = '{\"handler\": 3}' where task_id = 't1'")
            .execute(&mut impatient)
            .await
            .unwrap();
        let bad_state = store.get_task(&id, "t0").await.unwrap_err();
        assert!(
            matches!(bad_state, StoreError::Corrupt(ref m) if m.contains("lost_in_space")),
            "{bad_state}"
        );
        let bad_spec = store.get_task(&id, "t1").await.unwrap_err();
        assert!(matches!(bad_spec, StoreError::Corrupt(_)), "{bad_spec}");
    }
}
