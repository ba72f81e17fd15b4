//! [`DailyStore`] on SQLite: writes on the one writer connection, reads on the pool.

use super::daily::{
    self, DailyStore, Deleted, HookRow, ScheduleRow, TemplateRow, SCHEDULE_COLUMNS,
};
use super::decode::{self, RUN_COLUMNS};
use super::sqlite::{classify, SqliteStore};
use super::text::json_text;
use super::{RunRow, StoreError};
use async_trait::async_trait;
use serde_json::Value;

#[async_trait]
impl DailyStore for SqliteStore {
    async fn run_by_idempotency(
        &self,
        digest: &str,
        since_ms: i64,
    ) -> Result<Option<RunRow>, StoreError> {
        let row = sqlx::query(&format!(
            "select {RUN_COLUMNS} from runs
             where json_extract(options, '$.origin.idempotency') = ?1 and created_at_ms >= ?2
             order by created_at_ms limit 1"
        ))
        .bind(digest)
        .bind(since_ms)
        .fetch_optional(self.pool())
        .await
        .map_err(classify)?;
        row.as_ref().map(decode::run).transpose()
    }

    async fn put_template(
        &self,
        name: &str,
        spec: &Value,
        by: &str,
        at_ms: i64,
    ) -> Result<u32, StoreError> {
        // One writer at a time: the next version cannot be taken twice.
        let mut tx = self.begin_write().await?;
        let (version,): (i64,) = sqlx::query_as(
            "insert into templates (name, version, spec, created_at_ms, created_by)
             select ?1, coalesce(max(version), 0) + 1, ?2, ?3, ?4 from templates where name = ?1
             returning version",
        )
        .bind(name)
        .bind(json_text(spec))
        .bind(at_ms)
        .bind(by)
        .fetch_one(&mut *tx)
        .await
        .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(version as u32)
    }

    async fn get_template(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<TemplateRow>, StoreError> {
        let row = sqlx::query(
            "select name, version, spec, created_at_ms, created_by from templates
             where name = ?1 and (?2 is null or version = ?2)
             order by version desc limit 1",
        )
        .bind(name)
        .bind(version.map(i64::from))
        .fetch_optional(self.pool())
        .await
        .map_err(classify)?;
        row.as_ref().map(daily::template).transpose()
    }

    async fn list_templates(&self) -> Result<Vec<TemplateRow>, StoreError> {
        let rows = sqlx::query(
            "select name, version, spec, created_at_ms, created_by from templates
             order by name, version",
        )
        .fetch_all(self.pool())
        .await
        .map_err(classify)?;
        rows.iter().map(daily::template).collect()
    }

    async fn put_schedule(&self, s: &ScheduleRow) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let existed: Option<(i64,)> = sqlx::query_as("select 1 from schedules where name = ?1")
            .bind(&s.name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?;
        sqlx::query(
            "insert into schedules (name, spec, paused, created_at_ms, updated_at_ms)
             values (?1, ?2, ?3, ?4, ?4)
             on conflict (name) do update set spec = excluded.spec, paused = excluded.paused,
                 updated_at_ms = excluded.updated_at_ms",
        )
        .bind(&s.name)
        .bind(json_text(&s.spec))
        .bind(i64::from(s.paused))
        .bind(s.updated_at_ms)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(existed.is_none())
    }

    async fn get_schedule(&self, name: &str) -> Result<Option<ScheduleRow>, StoreError> {
        let row = sqlx::query(&format!(
            "select {SCHEDULE_COLUMNS}, paused from schedules where name = ?1"
        ))
        .bind(name)
        .fetch_optional(self.pool())
        .await
        .map_err(classify)?;
        row.as_ref().map(daily::schedule).transpose()
    }

    async fn list_schedules(&self) -> Result<Vec<ScheduleRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "select {SCHEDULE_COLUMNS}, paused from schedules order by name"
        ))
        .fetch_all(self.pool())
        .await
        .map_err(classify)?;
        rows.iter().map(daily::schedule).collect()
    }

    async fn delete_schedule(&self, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("delete from schedules where name = ?1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_schedule_paused(
        &self,
        name: &str,
        paused: bool,
        at_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let done =
            sqlx::query("update schedules set paused = ?2, updated_at_ms = ?3 where name = ?1")
                .bind(name)
                .bind(i64::from(paused))
                .bind(at_ms)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_schedule_tick(&self, name: &str, tick_ms: i64) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "update schedules set last_tick_ms = max(coalesce(last_tick_ms, ?2), ?2)
             where name = ?1",
        )
        .bind(name)
        .bind(tick_ms)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(())
    }

    async fn schedule_runs(&self, name: &str, limit: u32) -> Result<Vec<RunRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "select {RUN_COLUMNS} from runs where json_extract(options, '$.origin.schedule') = ?1
             order by created_at_ms desc, id desc limit ?2"
        ))
        .bind(name)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(classify)?;
        rows.iter().map(decode::run).collect()
    }

    async fn put_hook(&self, h: &HookRow) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let existed: Option<(i64,)> = sqlx::query_as("select 1 from hooks where name = ?1")
            .bind(&h.name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?;
        sqlx::query(
            "insert into hooks (name, template, secret, created_at_ms, updated_at_ms)
             values (?1, ?2, ?3, ?4, ?4)
             on conflict (name) do update set template = excluded.template,
                 secret = excluded.secret, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(&h.name)
        .bind(&h.template)
        .bind(&h.secret)
        .bind(h.updated_at_ms)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(existed.is_none())
    }

    async fn get_hook(&self, name: &str) -> Result<Option<HookRow>, StoreError> {
        let row = sqlx::query(
            "select name, template, secret, created_at_ms, updated_at_ms from hooks where name = ?1",
        )
        .bind(name)
        .fetch_optional(self.pool())
        .await
        .map_err(classify)?;
        row.as_ref().map(daily::hook).transpose()
    }

    async fn list_hooks(&self) -> Result<Vec<HookRow>, StoreError> {
        let rows = sqlx::query(
            "select name, template, secret, created_at_ms, updated_at_ms from hooks order by name",
        )
        .fetch_all(self.pool())
        .await
        .map_err(classify)?;
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
                 (json_extract(options, '$.ttl_s') is null and ?2 is not null and finished_at_ms < ?1 - ?2)
                 or finished_at_ms + json_extract(options, '$.ttl_s') * 1000 < ?1)
             order by finished_at_ms limit ?3",
        )
        .bind(now_ms)
        .bind(keep_ms)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(classify)?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    async fn delete_runs(&self, ids: &[String]) -> Result<Deleted, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut out = Deleted::default();
        for id in ids {
            // Only runs still finished: one re-run since it was picked is kept.
            let finished: Option<(i64,)> =
                sqlx::query_as("select 1 from runs where id = ?1 and finished_at_ms is not null")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(classify)?;
            if finished.is_none() {
                continue;
            }
            for (table, counter) in [("task_events", &mut out.events), ("tasks", &mut out.tasks)] {
                *counter += sqlx::query(&format!("delete from {table} where run_id = ?1"))
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(classify)?
                    .rows_affected();
            }
            out.runs += sqlx::query("delete from runs where id = ?1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(classify)?
                .rows_affected();
        }
        tx.commit().await.map_err(classify)?;
        Ok(out)
    }
}
