//! [`DailyStore`] on Postgres.

use super::daily::{
    self, DailyStore, Deleted, HookRow, ScheduleRow, TemplateRow, SCHEDULE_COLUMNS,
};
use super::decode::{self, RUN_COLUMNS};
use super::postgres::PgStore;
use super::text::{json_text, without_nul};
use super::{RunRow, StoreError};
use async_trait::async_trait;
use serde_json::Value;

#[async_trait]
impl DailyStore for PgStore {
    async fn run_by_idempotency(
        &self,
        digest: &str,
        since_ms: i64,
    ) -> Result<Option<RunRow>, StoreError> {
        let row = sqlx::query(&format!(
            "select {RUN_COLUMNS} from runs
             where options->'origin'->>'idempotency' = $1 and created_at_ms >= $2
             order by created_at_ms limit 1"
        ))
        .bind(digest)
        .bind(since_ms)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(decode::run).transpose()
    }

    async fn put_template(
        &self,
        name: &str,
        spec: &Value,
        by: &str,
        at_ms: i64,
    ) -> Result<u32, StoreError> {
        // Two concurrent PUTs of one name would pick the same version: the second one's
        // insert fails on the key and is tried once more with the next number.
        let mut last = None;
        for _ in 0..3 {
            let done: Result<(i32,), sqlx::Error> = sqlx::query_as(
                "insert into templates (name, version, spec, created_at_ms, created_by)
                 select $1, coalesce(max(version), 0) + 1, $2::text::jsonb, $3, $4
                 from templates where name = $1
                 returning version",
            )
            .bind(name)
            .bind(json_text(spec))
            .bind(at_ms)
            .bind(without_nul(by))
            .fetch_one(self.pool())
            .await;
            match done {
                Ok((v,)) => return Ok(v as u32),
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                    last = Some(sqlx::Error::Database(e))
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(last.expect("tried at least once").into())
    }

    async fn get_template(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<TemplateRow>, StoreError> {
        let row = sqlx::query(
            "select name, version, spec, created_at_ms, created_by from templates
             where name = $1 and ($2::int is null or version = $2)
             order by version desc limit 1",
        )
        .bind(name)
        .bind(version.map(|v| v as i32))
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(daily::template).transpose()
    }

    async fn list_templates(&self) -> Result<Vec<TemplateRow>, StoreError> {
        let rows = sqlx::query(
            "select name, version, spec, created_at_ms, created_by from templates
             order by name, version",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(daily::template).collect()
    }

    async fn put_schedule(&self, s: &ScheduleRow) -> Result<bool, StoreError> {
        let (created,): (bool,) = sqlx::query_as(
            "insert into schedules (name, spec, paused, created_at_ms, updated_at_ms)
             values ($1, $2::text::jsonb, $3, $4, $4)
             on conflict (name) do update set spec = excluded.spec, paused = excluded.paused,
                 updated_at_ms = excluded.updated_at_ms
             returning (xmax = 0)",
        )
        .bind(&s.name)
        .bind(json_text(&s.spec))
        .bind(s.paused)
        .bind(s.updated_at_ms)
        .fetch_one(self.pool())
        .await?;
        Ok(created)
    }

    async fn get_schedule(&self, name: &str) -> Result<Option<ScheduleRow>, StoreError> {
        let row = sqlx::query(&format!(
            "select {SCHEDULE_COLUMNS}, paused::int::int8 as paused from schedules where name = $1"
        ))
        .bind(name)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(daily::schedule).transpose()
    }

    async fn list_schedules(&self) -> Result<Vec<ScheduleRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "select {SCHEDULE_COLUMNS}, paused::int::int8 as paused from schedules order by name"
        ))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(daily::schedule).collect()
    }

    async fn delete_schedule(&self, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("delete from schedules where name = $1")
            .bind(name)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_schedule_paused(
        &self,
        name: &str,
        paused: bool,
        at_ms: i64,
    ) -> Result<bool, StoreError> {
        let done =
            sqlx::query("update schedules set paused = $2, updated_at_ms = $3 where name = $1")
                .bind(name)
                .bind(paused)
                .bind(at_ms)
                .execute(self.pool())
                .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_schedule_tick(&self, name: &str, tick_ms: i64) -> Result<(), StoreError> {
        sqlx::query(
            "update schedules set last_tick_ms = greatest(coalesce(last_tick_ms, $2), $2)
             where name = $1",
        )
        .bind(name)
        .bind(tick_ms)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn schedule_runs(&self, name: &str, limit: u32) -> Result<Vec<RunRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "select {RUN_COLUMNS} from runs where options->'origin'->>'schedule' = $1
             order by created_at_ms desc, id desc limit $2"
        ))
        .bind(name)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(decode::run).collect()
    }

    async fn put_hook(&self, h: &HookRow) -> Result<bool, StoreError> {
        let (created,): (bool,) = sqlx::query_as(
            "insert into hooks (name, template, secret, created_at_ms, updated_at_ms)
             values ($1, $2, $3, $4, $4)
             on conflict (name) do update set template = excluded.template,
                 secret = excluded.secret, updated_at_ms = excluded.updated_at_ms
             returning (xmax = 0)",
        )
        .bind(&h.name)
        .bind(&h.template)
        .bind(without_nul(&h.secret))
        .bind(h.updated_at_ms)
        .fetch_one(self.pool())
        .await?;
        Ok(created)
    }

    async fn get_hook(&self, name: &str) -> Result<Option<HookRow>, StoreError> {
        let row = sqlx::query(
            "select name, template, secret, created_at_ms, updated_at_ms from hooks where name = $1",
        )
        .bind(name)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(daily::hook).transpose()
    }

    async fn list_hooks(&self) -> Result<Vec<HookRow>, StoreError> {
        let rows = sqlx::query(
            "select name, template, secret, created_at_ms, updated_at_ms from hooks order by name",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(daily::hook).collect()
    }

    async fn due_runs(
        &self,
        now_ms: i64,
        keep_ms: Option<i64>,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "select id from runs where finished_at_ms is not null and (
                 (options->>'ttl_s' is null and $2::bigint is not null and finished_at_ms < $1 - $2)
                 or finished_at_ms + (options->>'ttl_s')::bigint * 1000 < $1)
             order by finished_at_ms limit $3",
        )
        .bind(now_ms)
        .bind(keep_ms)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    async fn delete_runs(&self, ids: &[String]) -> Result<Deleted, StoreError> {
        let mut tx = self.pool().begin().await?;
        // Only runs still finished: one re-run since it was picked is kept.
        let (ids,): (Vec<String>,) = sqlx::query_as(
            "select coalesce(array_agg(id), '{}') from runs
             where id = any($1) and finished_at_ms is not null",
        )
        .bind(ids)
        .fetch_one(&mut *tx)
        .await?;
        let events = sqlx::query("delete from task_events where run_id = any($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let tasks = sqlx::query("delete from tasks where run_id = any($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let runs = sqlx::query("delete from runs where id = any($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(Deleted {
            runs,
            tasks,
            events,
        })
    }
}
