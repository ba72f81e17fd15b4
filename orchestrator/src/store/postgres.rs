//! The Postgres store. Batches are written with one statement per table, passing each
//! column as an array and expanding it with `unnest`, so a batch of thousands of rows
//! costs a handful of round trips.

use super::decode::{
    self, EVENT_COLUMNS, RUN_COLUMNS, TASK_COLUMNS, TOKEN_COLUMNS, WORKER_COLUMNS,
};
use super::text::{json_text, without_nul as pg_text};
mod access;
mod analyze;
mod columns;
mod options;
mod single;

use super::*;
use crate::dag::TaskSpec;
use columns::{run_columns, TaskColumns, STATEMENT_ROWS};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::ConnectOptions;
use std::str::FromStr;
use std::time::Duration;

/// Postgres-backed [`Store`].
#[derive(Clone)]
pub struct PgStore {
    /// Reads for the API and recovery.
    pool: PgPool,
    /// The engine's group commits, on connections of their own so that a burst of
    /// heavy reads (fifty dashboards opening a 20,000-task run) never delays a commit.
    writer: PgPool,
    /// The leader epoch this orchestrator took (0 before [`Store::fence`]: no check).
    epoch: std::sync::Arc<std::sync::atomic::AtomicI64>,
    /// When the written tables are due an ANALYZE (see `analyze.rs`: without one,
    /// the writer's cached plans scan whole tables).
    analyzer: std::sync::Arc<analyze::Analyzer>,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

impl PgStore {
    /// Connects (lazily: the server may start before Postgres) and runs migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let opts = PgConnectOptions::from_str(url)
            .map_err(StoreError::Query)?
            .log_statements(tracing::log::LevelFilter::Trace)
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(2));
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(opts.clone())
            .await?;
        MIGRATOR.run(&pool).await?;
        // A leader stalled inside a write transaction (a long pause, a partition) holds
        // the leadership row `for share`, which would keep a standby from taking the next
        // epoch until Postgres noticed the dead connection, maybe hours later: its
        // session is ended after this long idle inside a transaction instead. The
        // engine's transactions never wait on the client that long.
        let writer_opts = opts.options([("idle_in_transaction_session_timeout", "10s")]);
        let writer = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(writer_opts)
            .await?;
        Ok(Self {
            pool,
            writer,
            epoch: std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0)),
            analyzer: std::sync::Arc::default(),
        })
    }

    /// The underlying pool (for tests and health).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Appends to the audit log, in the transaction of the change it records.
async fn record(tx: &mut sqlx::PgConnection, a: &AuditRow) -> Result<(), StoreError> {
    sqlx::query(
        "insert into audit_log (at_ms, actor, action, target, detail)
         values ($1, $2, $3, $4, $5::text::jsonb)",
    )
    .bind(a.at_ms)
    .bind(pg_text(&a.by))
    .bind(a.action.as_str())
    .bind(pg_text(&a.target))
    .bind(a.detail.as_ref().map(json_text))
    .execute(tx)
    .await?;
    Ok(())
}

/// Inserts tasks with their specs: those of new runs, and those spawned into running ones.
async fn insert_tasks<'a>(
    tx: &mut sqlx::PgConnection,
    tasks: impl Iterator<Item = (&'a TaskSpec, &'a TaskRow)>,
) -> Result<(), StoreError> {
    let mut t = TaskColumns::default();
    let mut idx = Vec::new();
    let mut spec = Vec::new();
    for (s, row) in tasks {
        t.push(row);
        idx.push(row.idx as i32);
        let text = json_text(s);
        t.bytes += text.len();
        spec.push(text);
        if t.is_full() {
            insert_task_rows(&mut *tx, &t, &idx, &spec).await?;
            (t, idx, spec) = Default::default();
        }
    }
    insert_task_rows(tx, &t, &idx, &spec).await
}

async fn insert_task_rows(
    tx: &mut sqlx::PgConnection,
    t: &TaskColumns,
    idx: &[i32],
    spec: &[String],
) -> Result<(), StoreError> {
    if idx.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "insert into tasks (run_id, task_id, idx, spec, state, attempt, failures, lost, output, error, worker_id, queued_at_ms, started_at_ms, finished_at_ms, usage, rev)
         select r, t, i, s::jsonb, st, a, f, l, o::jsonb, e::jsonb, w, q, sa, fa, us::jsonb, rv
         from unnest($1::text[], $2::text[], $3::int4[], $4::text[], $5::text[], $6::int4[], $7::int4[], $8::text[], $9::text[], $10::text[], $11::int8[], $12::int8[], $13::int8[], $14::int4[], $15::text[], $16::int8[])
           as u(r, t, i, s, st, a, f, o, e, w, q, sa, fa, l, us, rv)",
    )
    .bind(&t.run_id).bind(&t.task_id).bind(idx).bind(spec).bind(&t.state)
    .bind(&t.attempt).bind(&t.failures).bind(&t.output).bind(&t.error).bind(&t.worker_id)
    .bind(&t.queued_at).bind(&t.started_at).bind(&t.finished_at).bind(&t.lost).bind(&t.usage)
    .bind(&t.rev)
    .execute(tx)
    .await?;
    Ok(())
}

async fn update_task_rows(tx: &mut sqlx::PgConnection, t: &TaskColumns) -> Result<(), StoreError> {
    if t.len() == 0 {
        return Ok(());
    }
    sqlx::query(
        "update tasks set state = u.st, attempt = u.a, failures = u.f, lost = u.l, output = u.o::jsonb,
             error = u.e::jsonb, worker_id = u.w, queued_at_ms = u.q, started_at_ms = u.sa,
             finished_at_ms = u.fa, usage = u.us::jsonb, rev = u.rv
         from unnest($1::text[], $2::text[], $3::text[], $4::int4[], $5::int4[], $6::text[], $7::text[], $8::text[], $9::int8[], $10::int8[], $11::int8[], $12::int4[], $13::text[], $14::int8[])
           as u(r, t, st, a, f, o, e, w, q, sa, fa, l, us, rv)
         where tasks.run_id = u.r and tasks.task_id = u.t",
    )
    .bind(&t.run_id).bind(&t.task_id).bind(&t.state).bind(&t.attempt).bind(&t.failures)
    .bind(&t.output).bind(&t.error).bind(&t.worker_id).bind(&t.queued_at)
    .bind(&t.started_at).bind(&t.finished_at).bind(&t.lost).bind(&t.usage).bind(&t.rev)
    .execute(tx)
    .await?;
    Ok(())
}

impl PgStore {
    /// Writes a non-empty batch: one statement when it fits, else a transaction.
    async fn write(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        let ours = self.epoch.load(std::sync::atomic::Ordering::Acquire);
        // An idle engine's commits (a submission, a result) are small: one round trip.
        if single::fits(batch) {
            return single::apply(&self.writer, ours, batch).await;
        }
        let mut tx = self.writer.begin().await?;
        if ours != 0 {
            // FOR SHARE: a takeover's increment waits for this transaction, and every
            // transaction after it sees the new epoch and writes nothing.
            let (current,): (i64,) =
                sqlx::query_as("select epoch from leadership where id = 1 for share")
                    .fetch_one(&mut *tx)
                    .await?;
            if current != ours {
                return Err(StoreError::Fenced { ours, current });
            }
        }
        if !batch.new_runs.is_empty() {
            let runs: Vec<&RunRow> = batch.new_runs.iter().map(|n| &n.run).collect();
            let c = run_columns(&runs);
            // Written once, here: run updates never change the options.
            let options: Vec<String> = runs.iter().map(|r| json_text(&*r.options)).collect();
            sqlx::query(
                "insert into runs (id, name, queue, state, task_count, counts, error, created_at_ms, finished_at_ms, last_seq, options, usage, created_by)
                 select id, name, queue, state, task_count, counts::jsonb, error, created_at_ms, finished_at_ms, last_seq, options::jsonb, usage::jsonb, created_by
                 from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int4[], $6::text[], $7::text[], $8::int8[], $9::int8[], $10::int8[], $11::text[], $12::text[], $13::text[])
                   as u(id, name, queue, state, task_count, counts, error, created_at_ms, finished_at_ms, last_seq, options, usage, created_by)",
            )
            .bind(&c.id).bind(&c.name).bind(&c.queue).bind(&c.state).bind(&c.task_count)
            .bind(&c.counts).bind(&c.error).bind(&c.created_at).bind(&c.finished_at).bind(&c.last_seq)
            .bind(&options).bind(&c.usage).bind(&c.created_by)
            .execute(&mut *tx)
            .await?;
            insert_tasks(&mut tx, batch.new_runs.iter().flat_map(NewRun::tasks)).await?;
        }
        insert_tasks(&mut tx, batch.new_tasks.iter().map(|(s, t)| (s, t))).await?;
        if !batch.specs.is_empty() {
            let run: Vec<&str> = batch.specs.iter().map(|(r, _)| r.as_str()).collect();
            let task: Vec<&str> = batch.specs.iter().map(|(_, s)| s.id.as_str()).collect();
            let spec: Vec<String> = batch.specs.iter().map(|(_, s)| json_text(s)).collect();
            sqlx::query(
                "update tasks set spec = u.s::jsonb
                 from unnest($1::text[], $2::text[], $3::text[]) as u(r, t, s)
                 where tasks.run_id = u.r and tasks.task_id = u.t",
            )
            .bind(&run)
            .bind(&task)
            .bind(&spec)
            .execute(&mut *tx)
            .await?;
        }
        options::update_options(&mut tx, &batch.options).await?;
        let mut t = TaskColumns::default();
        for row in &batch.tasks {
            t.push(row);
            if t.is_full() {
                update_task_rows(&mut tx, &std::mem::take(&mut t)).await?;
            }
        }
        update_task_rows(&mut tx, &t).await?;
        for events in batch.events.chunks(STATEMENT_ROWS) {
            let n = events.len();
            let (
                mut run_id,
                mut seq,
                mut task_id,
                mut kind,
                mut state,
                mut attempt,
                mut worker,
                mut at,
                mut data,
                mut by,
            ) = (
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
            );
            for e in events {
                run_id.push(e.run_id.as_str());
                seq.push(e.seq as i64);
                task_id.push(e.task_id.as_deref());
                kind.push(e.kind.as_str());
                state.push(e.state.as_deref());
                attempt.push(e.attempt as i32);
                worker.push(e.worker_id.as_deref().map(pg_text));
                at.push(e.at_ms);
                data.push(e.data.as_ref().map(json_text));
                by.push(e.by.as_deref());
            }
            sqlx::query(
                "insert into task_events (run_id, seq, task_id, kind, state, attempt, worker_id, at_ms, data, actor)
                 select r, s, t, k, st, a, w, at, d::jsonb, b
                 from unnest($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::int4[], $7::text[], $8::int8[], $9::text[], $10::text[])
                   as u(r, s, t, k, st, a, w, at, d, b)
                 on conflict (run_id, seq) do nothing",
            )
            .bind(&run_id).bind(&seq).bind(&task_id).bind(&kind).bind(&state)
            .bind(&attempt).bind(&worker).bind(&at).bind(&data).bind(&by)
            .execute(&mut *tx)
            .await?;
        }
        if !batch.runs.is_empty() {
            let runs: Vec<&RunRow> = batch.runs.iter().collect();
            let c = run_columns(&runs);
            sqlx::query(
                "update runs set state = u.state, counts = u.counts::jsonb, error = u.error,
                     finished_at_ms = u.finished_at_ms, last_seq = u.last_seq, usage = u.usage::jsonb
                 from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::int8[], $7::text[])
                   as u(id, state, counts, error, finished_at_ms, last_seq, usage)
                 where runs.id = u.id",
            )
            .bind(&c.id)
            .bind(&c.state)
            .bind(&c.counts)
            .bind(&c.error)
            .bind(&c.finished_at)
            .bind(&c.last_seq)
            .bind(&c.usage)
            .execute(&mut *tx)
            .await?;
        }
        if !batch.workers.is_empty() {
            let id: Vec<String> = batch.workers.iter().map(|w| pg_text(&w.id)).collect();
            let info: Vec<String> = batch.workers.iter().map(|w| json_text(&w.info)).collect();
            let state: Vec<&str> = batch.workers.iter().map(|w| w.state.as_str()).collect();
            let hb: Vec<i64> = batch.workers.iter().map(|w| w.last_heartbeat_ms).collect();
            sqlx::query(
                "insert into workers (id, info, state, last_heartbeat_ms)
                 select id, info::jsonb, state, hb from unnest($1::text[], $2::text[], $3::text[], $4::int8[]) as u(id, info, state, hb)
                 on conflict (id) do update set info = excluded.info, state = excluded.state,
                     last_heartbeat_ms = excluded.last_heartbeat_ms",
            )
            .bind(&id).bind(&info).bind(&state).bind(&hb)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// `list_runs`' statement, with or without a state filter (`$1`; `$2` the cursor, `$3`
/// the limit). One statement per shape: `($1 is null or state = $1)` cannot use
/// `runs_by_state`, so a filter for a rare state walked every run by id.
pub(crate) fn list_runs_sql(by_state: bool) -> String {
    let state = if by_state {
        "state = $1"
    } else {
        "$1::text is null"
    };
    format!(
        "select {RUN_COLUMNS} from runs
         where {state} and ($2::text is null or id < $2)
         order by id desc limit $3"
    )
}

#[async_trait]
impl Store for PgStore {
    async fn apply(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.write(batch).await?;
        if self.analyzer.note(analyze::rows(batch)) {
            analyze::spawn(self.pool.clone(), self.analyzer.clone());
        }
        Ok(())
    }

    async fn list_runs(&self, q: &RunQuery) -> Result<Vec<RunRow>, StoreError> {
        let rows = sqlx::query(&list_runs_sql(q.state.is_some()))
            .bind(&q.state)
            .bind(&q.before)
            .bind(q.limit as i64)
            // Planned for the state asked each time, not once for all states: which
            // plan is right depends on how many runs are in it.
            .persistent(false)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode::run).collect()
    }

    async fn get_run(&self, id: &str) -> Result<Option<RunRow>, StoreError> {
        let row = sqlx::query(&format!("select {RUN_COLUMNS} from runs where id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode::run).transpose()
    }

    async fn get_tasks(&self, run_id: &str) -> Result<Vec<StoredTask>, StoreError> {
        let rows = sqlx::query(&format!(
            "select {TASK_COLUMNS} from tasks where run_id = $1 order by idx"
        ))
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode::task).collect()
    }

    async fn list_tasks(&self, run_id: &str, q: &TaskQuery) -> Result<Vec<StoredTask>, StoreError> {
        // The cursor is a bound of an index scan, so a page costs its own rows whatever
        // its depth in the run; an unknown cursor bounds it at null: no rows. A state
        // filter reads each state's page from the (run_id, state, idx) index and merges
        // them: a rare state does not scan the whole run.
        let after = "idx > case when $2::text is null then -1
                     else (select idx from tasks where run_id = $1 and task_id = $2) end";
        // Changed rows only: the same walk, skipping rows written before `since` (no
        // index on `rev`, which changes at every write). Without `since`, the statement
        // is the one it always was, so the plan of a plain page does not change.
        let changed = |n: u8| match q.since {
            Some(_) => format!(" and rev >= ${n}"),
            None => String::new(),
        };
        let since = q.since.map(|s| s as i64);
        if q.states.is_empty() {
            let sql = format!(
                "select {TASK_COLUMNS} from tasks where run_id = $1 and {after}{}
                 order by idx limit $3",
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
            .await?;
            return rows.iter().map(decode::task).collect();
        }
        let mut pages = Vec::with_capacity(q.states.len());
        for (i, state) in q.states.iter().enumerate() {
            if q.states[..i].contains(state) {
                continue;
            }
            let sql = format!(
                "select {TASK_COLUMNS} from tasks where run_id = $1 and state = $4 and {after}{}
                 order by idx limit $3",
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
            .await?;
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
            "select {TASK_COLUMNS} from tasks where run_id = $1 and task_id = $2"
        ))
        .bind(run_id)
        .bind(task_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(decode::task).transpose()
    }

    async fn get_tasks_by_id(
        &self,
        run_id: &str,
        task_ids: &[String],
    ) -> Result<Vec<StoredTask>, StoreError> {
        let rows = sqlx::query(&format!(
            "select {TASK_COLUMNS} from tasks where run_id = $1 and task_id = any($2)
             order by idx"
        ))
        .bind(run_id)
        .bind(task_ids)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode::task).collect()
    }

    async fn events(
        &self,
        run_id: &str,
        since: u64,
        task_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<EventRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "select {EVENT_COLUMNS} from task_events
             where run_id = $1 and seq > $2 and ($3::text is null or task_id = $3)
             order by seq limit $4"
        ))
        .bind(run_id)
        .bind(since as i64)
        .bind(task_id)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode::event).collect()
    }

    async fn run_history(&self, run_id: &str) -> Result<Vec<EventRow>, StoreError> {
        // `task_id is null` lets the index of tasks' events find the run's own.
        let rows = sqlx::query(&format!(
            "select {EVENT_COLUMNS} from task_events
             where run_id = $1 and task_id is null and kind = 'run' order by seq"
        ))
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode::event).collect()
    }

    async fn active_runs(&self) -> Result<Vec<RunRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "select {RUN_COLUMNS} from runs where state = 'running' order by id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode::run).collect()
    }

    async fn list_workers(&self) -> Result<Vec<WorkerRow>, StoreError> {
        let rows = sqlx::query(&format!("select {WORKER_COLUMNS} from workers order by id"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode::worker).collect()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("select 1").execute(&self.pool).await?;
        Ok(())
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
            .fetch_one(&self.writer)
            .await?;
        Ok(current == self.epoch.load(std::sync::atomic::Ordering::Acquire))
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
mod tests;
