//! A small batch written in one statement: one round trip to Postgres, committed on
//! its own (an implicit transaction, durable as any other with `synchronous_commit`
//! on) instead of BEGIN, the leadership check, a statement per table and COMMIT, each
//! waiting for its answer. A lone submission or result is what an idle engine commits,
//! and those round trips were most of a commit's time apart from the WAL flush
//! (benches/NOTES.md, "W3 round trip").

use super::super::text::{json_text, without_nul as pg_text};
use super::columns::{run_columns, TaskColumns, STATEMENT_ROWS};
use super::*;

/// The whole write: the leadership row is locked `for share` first (a takeover's
/// increment waits for this statement, as it waits for the transaction on the long
/// path) and every sub-statement writes only while its epoch is ours (or none is
/// checked: `$1 = 0`). The answer is the epoch read, for [`StoreError::Fenced`].
///
/// Inserts and updates of the same rows never share this statement (its
/// sub-statements all see the snapshot taken before any of them ran), so
/// [`fits`] sends a batch that has both down the transaction path.
const SQL: &str = "with lead as (select epoch from leadership where id = 1 for share),
 go as (select 1 where $1::int8 = 0 or exists (select 1 from lead where epoch = $1::int8)),
 new_runs as (
   insert into runs (id, name, queue, state, task_count, counts, error, created_at_ms, finished_at_ms, last_seq, options, usage, created_by)
   select id, name, queue, state, task_count, counts::jsonb, error, created_at_ms, finished_at_ms, last_seq, options::jsonb, usage::jsonb, created_by
   from unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::int4[], $7::text[], $8::text[], $9::int8[], $10::int8[], $11::int8[], $12::text[], $13::text[], $14::text[])
     as u(id, name, queue, state, task_count, counts, error, created_at_ms, finished_at_ms, last_seq, options, usage, created_by)
   where exists (select 1 from go)),
 new_tasks as (
   insert into tasks (run_id, task_id, idx, spec, state, attempt, failures, lost, output, error, worker_id, queued_at_ms, started_at_ms, finished_at_ms, usage, rev)
   select r, t, i, s::jsonb, st, a, f, l, o::jsonb, e::jsonb, w, q, sa, fa, us::jsonb, rv
   from unnest($15::text[], $16::text[], $17::int4[], $18::text[], $19::text[], $20::int4[], $21::int4[], $22::text[], $23::text[], $24::text[], $25::int8[], $26::int8[], $27::int8[], $28::int4[], $29::text[], $60::int8[])
     as u(r, t, i, s, st, a, f, o, e, w, q, sa, fa, l, us, rv)
   where exists (select 1 from go)),
 task_updates as (
   update tasks set state = u.st, attempt = u.a, failures = u.f, lost = u.l, output = u.o::jsonb,
       error = u.e::jsonb, worker_id = u.w, queued_at_ms = u.q, started_at_ms = u.sa,
       finished_at_ms = u.fa, usage = u.us::jsonb, rev = u.rv
   from unnest($30::text[], $31::text[], $32::text[], $33::int4[], $34::int4[], $35::text[], $36::text[], $37::text[], $38::int8[], $39::int8[], $40::int8[], $41::int4[], $42::text[], $61::int8[])
     as u(r, t, st, a, f, o, e, w, q, sa, fa, l, us, rv)
   where tasks.run_id = u.r and tasks.task_id = u.t and exists (select 1 from go)),
 events as (
   insert into task_events (run_id, seq, task_id, kind, state, attempt, worker_id, at_ms, data, actor)
   select r, s, t, k, st, a, w, at, d::jsonb, b
   from unnest($43::text[], $44::int8[], $45::text[], $46::text[], $47::text[], $48::int4[], $49::text[], $50::int8[], $51::text[], $52::text[])
     as u(r, s, t, k, st, a, w, at, d, b)
   where exists (select 1 from go)
   on conflict (run_id, seq) do nothing),
 run_updates as (
   update runs set state = u.state, counts = u.counts::jsonb, error = u.error,
       finished_at_ms = u.finished_at_ms, last_seq = u.last_seq, usage = u.usage::jsonb
   from unnest($53::text[], $54::text[], $55::text[], $56::text[], $57::int8[], $58::int8[], $59::text[])
     as u(id, state, counts, error, finished_at_ms, last_seq, usage)
   where runs.id = u.id and exists (select 1 from go))
 select (select epoch from lead)";

/// Whether `batch` can be written by [`apply`]: small enough for one statement per
/// table, nothing that the long path writes with statements of its own (specs,
/// options, workers), and no row both inserted and updated (see [`SQL`]).
pub(super) fn fits(batch: &WriteBatch) -> bool {
    let inserts = !batch.new_runs.is_empty() || !batch.new_tasks.is_empty();
    let updates = !batch.tasks.is_empty() || !batch.runs.is_empty();
    let new_task_rows: usize =
        batch.new_runs.iter().map(|n| n.tasks.len()).sum::<usize>() + batch.new_tasks.len();
    batch.specs.is_empty()
        && batch.options.is_empty()
        && batch.workers.is_empty()
        && !(inserts && updates)
        && batch.new_runs.len() <= SMALL
        && new_task_rows <= SMALL
        && batch.tasks.len() <= SMALL
        && batch.runs.len() <= SMALL
        && batch.events.len() <= SMALL
}

/// Rows of one kind a one-statement batch holds at most: what an idle engine commits
/// (a submission of a small run, a handful of results). Bigger batches come under load,
/// where the transaction path's round trips are shared by many rows.
const SMALL: usize = 16;
const _: () = assert!(SMALL <= STATEMENT_ROWS);

/// Writes `batch` (which [`fits`]) in one statement. `ours` is this orchestrator's
/// epoch, 0 for none.
pub(super) async fn apply(
    pool: &sqlx::PgPool,
    ours: i64,
    batch: &WriteBatch,
) -> Result<(), StoreError> {
    let new_runs: Vec<&RunRow> = batch.new_runs.iter().map(|n| &n.run).collect();
    let n = run_columns(&new_runs);
    let options: Vec<String> = new_runs.iter().map(|r| json_text(&*r.options)).collect();
    let mut t = TaskColumns::default();
    let (mut idx, mut spec) = (Vec::new(), Vec::new());
    for (s, row) in batch
        .new_runs
        .iter()
        .flat_map(NewRun::tasks)
        .chain(batch.new_tasks.iter().map(|(s, t)| (s, t)))
    {
        t.push(row);
        idx.push(row.idx as i32);
        spec.push(json_text(s));
    }
    let mut u = TaskColumns::default();
    for row in &batch.tasks {
        u.push(row);
    }
    let e = EventColumns::new(&batch.events);
    let runs: Vec<&RunRow> = batch.runs.iter().collect();
    let r = run_columns(&runs);
    let (current,): (Option<i64>,) = sqlx::query_as(SQL)
        .bind(ours)
        .bind(&n.id)
        .bind(&n.name)
        .bind(&n.queue)
        .bind(&n.state)
        .bind(&n.task_count)
        .bind(&n.counts)
        .bind(&n.error)
        .bind(&n.created_at)
        .bind(&n.finished_at)
        .bind(&n.last_seq)
        .bind(&options)
        .bind(&n.usage)
        .bind(&n.created_by)
        .bind(&t.run_id)
        .bind(&t.task_id)
        .bind(&idx)
        .bind(&spec)
        .bind(&t.state)
        .bind(&t.attempt)
        .bind(&t.failures)
        .bind(&t.output)
        .bind(&t.error)
        .bind(&t.worker_id)
        .bind(&t.queued_at)
        .bind(&t.started_at)
        .bind(&t.finished_at)
        .bind(&t.lost)
        .bind(&t.usage)
        .bind(&u.run_id)
        .bind(&u.task_id)
        .bind(&u.state)
        .bind(&u.attempt)
        .bind(&u.failures)
        .bind(&u.output)
        .bind(&u.error)
        .bind(&u.worker_id)
        .bind(&u.queued_at)
        .bind(&u.started_at)
        .bind(&u.finished_at)
        .bind(&u.lost)
        .bind(&u.usage)
        .bind(&e.run_id)
        .bind(&e.seq)
        .bind(&e.task_id)
        .bind(&e.kind)
        .bind(&e.state)
        .bind(&e.attempt)
        .bind(&e.worker)
        .bind(&e.at)
        .bind(&e.data)
        .bind(&e.by)
        .bind(&r.id)
        .bind(&r.state)
        .bind(&r.counts)
        .bind(&r.error)
        .bind(&r.finished_at)
        .bind(&r.last_seq)
        .bind(&r.usage)
        .bind(&t.rev)
        .bind(&u.rev)
        .fetch_one(pool)
        .await?;
    if ours != 0 && current != Some(ours) {
        return Err(StoreError::Fenced {
            ours,
            current: current.unwrap_or(0),
        });
    }
    Ok(())
}

/// Column arrays of event rows.
#[derive(Default)]
pub(super) struct EventColumns<'a> {
    run_id: Vec<&'a str>,
    seq: Vec<i64>,
    task_id: Vec<Option<&'a str>>,
    kind: Vec<&'a str>,
    state: Vec<Option<&'a str>>,
    attempt: Vec<i32>,
    worker: Vec<Option<String>>,
    at: Vec<i64>,
    data: Vec<Option<String>>,
    by: Vec<Option<&'a str>>,
}

impl<'a> EventColumns<'a> {
    fn new(events: &'a [EventRow]) -> Self {
        let mut c = Self::default();
        for e in events {
            c.run_id.push(e.run_id.as_str());
            c.seq.push(e.seq as i64);
            c.task_id.push(e.task_id.as_deref());
            c.kind.push(e.kind.as_str());
            c.state.push(e.state.as_deref());
            c.attempt.push(e.attempt as i32);
            c.worker.push(e.worker_id.as_deref().map(pg_text));
            c.at.push(e.at_ms);
            c.data.push(e.data.as_ref().map(json_text));
            c.by.push(e.by.as_deref());
        }
        c
    }
}
