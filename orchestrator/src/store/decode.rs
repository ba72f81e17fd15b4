//! Stored rows back into domain rows, written once for both stores. Each store says how
//! to read one typed column ([`Columns`]); everything else (which columns, what they
//! mean, what counts as corrupt) is here, so the twins cannot decode differently. A
//! column that is missing, of the wrong type or out of range is a
//! [`StoreError::Corrupt`] naming it, never a panic.

use super::rows::{counts_from_json, task_usage_from_json, usage_from_json};
use super::{AgentRow, AuditAction, AuditRow, EventRow, RunRow, StoredTask, TaskRow, TokenRow};
use super::{StoreError, WorkerRow};
use crate::access::Scope;
use crate::dag::TaskSpec;
use crate::state_machine::{RunState, TaskFailure, TaskState};
use serde_json::Value;

/// Columns read by [`run`], in this order.
pub const RUN_COLUMNS: &str = "id, name, queue, state, task_count, counts, error, created_at_ms, \
     finished_at_ms, last_seq, options, usage, created_by";
/// Columns read by [`task`].
pub const TASK_COLUMNS: &str =
    "run_id, task_id, idx, spec, state, attempt, failures, lost, output, error, \
     worker_id, queued_at_ms, started_at_ms, finished_at_ms, usage, rev";
/// Columns read by [`event`].
pub const EVENT_COLUMNS: &str =
    "run_id, seq, task_id, kind, state, attempt, worker_id, at_ms, data, actor";
/// Columns read by [`token`].
pub const TOKEN_COLUMNS: &str =
    "name, scope, secret_sha256, created_at_ms, created_by, last_used_at_ms";
/// Columns read by [`worker`].
pub const WORKER_COLUMNS: &str = "id, info, state, last_heartbeat_ms";
/// Columns read by [`agent`].
pub const AGENT_COLUMNS: &str = "name, spec, created_at_ms, updated_at_ms";
/// Columns read by [`audit`].
pub const AUDIT_COLUMNS: &str = "id, at_ms, actor, action, target, detail";

/// One typed column of a row, as a store reads it.
pub trait Columns {
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError>;
    fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError>;
    /// A JSON column (jsonb on Postgres, text on SQLite), parsed.
    fn opt_json(&self, column: &str) -> Result<Option<Value>, StoreError>;

    fn text(&self, column: &str) -> Result<String, StoreError> {
        self.opt_text(column)?
            .ok_or_else(|| corrupt(column, "null"))
    }
    fn int(&self, column: &str) -> Result<i64, StoreError> {
        self.opt_int(column)?.ok_or_else(|| corrupt(column, "null"))
    }
    /// An integer that must fit `T` (counts, attempts, sequence numbers).
    fn int_as<T: TryFrom<i64>>(&self, column: &str) -> Result<T, StoreError> {
        let v = self.int(column)?;
        T::try_from(v).map_err(|_| corrupt(column, format!("{v} is out of range")))
    }
    fn json(&self, column: &str) -> Result<Value, StoreError> {
        self.opt_json(column)?
            .ok_or_else(|| corrupt(column, "null"))
    }
}

/// Stored data that does not decode.
pub fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

fn parsed<T: serde::de::DeserializeOwned>(what: &str, v: Value) -> Result<T, StoreError> {
    serde_json::from_value(v).map_err(|e| corrupt(what, e))
}

/// A row of `runs` ([`RUN_COLUMNS`]).
pub fn run(row: &impl Columns) -> Result<RunRow, StoreError> {
    let state = row.text("state")?;
    Ok(RunRow {
        id: row.text("id")?,
        name: row.text("name")?,
        queue: row.text("queue")?,
        state: RunState::parse(&state).ok_or_else(|| corrupt("run state", &state))?,
        task_count: row.int_as("task_count")?,
        counts: counts_from_json(&row.json("counts")?),
        error: row.opt_text("error")?,
        created_at_ms: row.int("created_at_ms")?,
        finished_at_ms: row.opt_int("finished_at_ms")?,
        last_seq: row.int_as("last_seq")?,
        options: row
            .opt_json("options")?
            .map(|v| parsed("run options", v))
            .transpose()?
            .map(std::sync::Arc::new)
            .unwrap_or_default(),
        usage: usage_from_json(row.opt_json("usage")?),
        created_by: row.opt_text("created_by")?,
    })
}

/// A row of `tasks` with its spec ([`TASK_COLUMNS`]).
pub fn task(row: &impl Columns) -> Result<StoredTask, StoreError> {
    let state = row.text("state")?;
    let (usage, charges) = task_usage_from_json(row.opt_json("usage")?);
    Ok(StoredTask {
        spec: parsed::<TaskSpec>("task spec", row.json("spec")?)?,
        row: TaskRow {
            run_id: row.text("run_id")?,
            task_id: row.text("task_id")?,
            idx: row.int_as("idx")?,
            state: TaskState::parse(&state).ok_or_else(|| corrupt("task state", &state))?,
            attempt: row.int_as("attempt")?,
            failures: row.int_as("failures")?,
            lost: row.int_as("lost")?,
            output: row.opt_json("output")?,
            error: row
                .opt_json("error")?
                .map(|v| parsed::<TaskFailure>("task error", v))
                .transpose()?,
            worker_id: row.opt_text("worker_id")?,
            queued_at_ms: row.opt_int("queued_at_ms")?,
            started_at_ms: row.opt_int("started_at_ms")?,
            finished_at_ms: row.opt_int("finished_at_ms")?,
            usage,
            charges,
            rev: row.int_as("rev")?,
        },
    })
}

/// A row of `task_events` ([`EVENT_COLUMNS`]).
pub fn event(row: &impl Columns) -> Result<EventRow, StoreError> {
    Ok(EventRow {
        run_id: row.text("run_id")?,
        seq: row.int_as("seq")?,
        task_id: row.opt_text("task_id")?,
        kind: row.text("kind")?,
        state: row.opt_text("state")?,
        attempt: row.int_as("attempt")?,
        worker_id: row.opt_text("worker_id")?,
        at_ms: row.int("at_ms")?,
        data: row.opt_json("data")?,
        by: row.opt_text("actor")?,
    })
}

/// A row of `workers` ([`WORKER_COLUMNS`]).
pub fn worker(row: &impl Columns) -> Result<WorkerRow, StoreError> {
    Ok(WorkerRow {
        id: row.text("id")?,
        info: row.json("info")?,
        state: row.text("state")?,
        last_heartbeat_ms: row.int("last_heartbeat_ms")?,
    })
}

/// A row of `agents` ([`AGENT_COLUMNS`]).
pub fn agent(row: &impl Columns) -> Result<AgentRow, StoreError> {
    Ok(AgentRow {
        name: row.text("name")?,
        spec: parsed("agent spec", row.json("spec")?)?,
        created_at_ms: row.int("created_at_ms")?,
        updated_at_ms: row.int("updated_at_ms")?,
    })
}

/// A row of `api_tokens` ([`TOKEN_COLUMNS`]).
pub fn token(row: &impl Columns) -> Result<TokenRow, StoreError> {
    let scope = row.text("scope")?;
    Ok(TokenRow {
        name: row.text("name")?,
        scope: Scope::parse(&scope).ok_or_else(|| corrupt("token scope", &scope))?,
        secret_sha256: row.text("secret_sha256")?,
        created_at_ms: row.int("created_at_ms")?,
        created_by: row.text("created_by")?,
        last_used_at_ms: row.opt_int("last_used_at_ms")?,
    })
}

/// A row of `audit_log` ([`AUDIT_COLUMNS`]).
pub fn audit(row: &impl Columns) -> Result<AuditRow, StoreError> {
    let action = row.text("action")?;
    Ok(AuditRow {
        id: row.int("id")?,
        at_ms: row.int("at_ms")?,
        by: row.text("actor")?,
        action: AuditAction::parse(&action).ok_or_else(|| corrupt("audit action", &action))?,
        target: row.text("target")?,
        detail: row.opt_json("detail")?,
    })
}

impl Columns for sqlx::postgres::PgRow {
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        sqlx::Row::try_get(self, column).map_err(|e| corrupt(column, e))
    }

    fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError> {
        // Counters are int4, times and sequences int8.
        sqlx::Row::try_get::<Option<i64>, _>(self, column)
            .or_else(|_| {
                sqlx::Row::try_get::<Option<i32>, _>(self, column).map(|v| v.map(i64::from))
            })
            .map_err(|e| corrupt(column, e))
    }

    fn opt_json(&self, column: &str) -> Result<Option<Value>, StoreError> {
        sqlx::Row::try_get(self, column).map_err(|e| corrupt(column, e))
    }
}

impl Columns for sqlx::sqlite::SqliteRow {
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        sqlx::Row::try_get(self, column).map_err(|e| corrupt(column, e))
    }

    fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError> {
        sqlx::Row::try_get(self, column).map_err(|e| corrupt(column, e))
    }

    fn opt_json(&self, column: &str) -> Result<Option<Value>, StoreError> {
        self.opt_text(column)?
            .map(|s| serde_json::from_str(&s).map_err(|e| corrupt(column, e)))
            .transpose()
    }
}
