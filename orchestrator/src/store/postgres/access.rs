//! Agents, API tokens and the audit log on Postgres: every change to agents or tokens
//! is recorded in the audit log in the same transaction.

use super::*;
use crate::store::decode::{AGENT_COLUMNS, AUDIT_COLUMNS};

pub(super) async fn list_agents(s: &PgStore) -> Result<Vec<AgentRow>, StoreError> {
    let rows = sqlx::query(&format!("select {AGENT_COLUMNS} from agents order by name"))
        .fetch_all(&s.pool)
        .await?;
    rows.iter().map(decode::agent).collect()
}

pub(super) async fn get_agent(s: &PgStore, name: &str) -> Result<Option<AgentRow>, StoreError> {
    let row = sqlx::query(&format!(
        "select {AGENT_COLUMNS} from agents where name = $1"
    ))
    .bind(name)
    .fetch_optional(&s.pool)
    .await?;
    row.as_ref().map(decode::agent).transpose()
}

pub(super) async fn put_agent(
    s: &PgStore,
    a: &AgentRow,
    by: &str,
) -> Result<(AgentRow, bool), StoreError> {
    let mut tx = s.pool.begin().await?;
    // `xmax = 0` only on a row this statement inserted: tells created from replaced.
    let (created_at_ms, created): (i64, bool) = sqlx::query_as(
        "insert into agents (name, spec, created_at_ms, updated_at_ms)
         values ($1, $2::text::jsonb, $3, $3)
         on conflict (name) do update set spec = excluded.spec, updated_at_ms = excluded.updated_at_ms
         returning created_at_ms, (xmax = 0)",
    )
    .bind(pg_text(&a.name))
    .bind(json_text(&a.spec))
    .bind(a.updated_at_ms)
    .fetch_one(&mut *tx)
    .await?;
    let audit = AuditRow::new(AuditAction::AgentPut, by, &a.name, a.updated_at_ms)
        .with_detail(serde_json::json!({"created": created}));
    record(&mut tx, &audit).await?;
    tx.commit().await?;
    let stored = AgentRow {
        created_at_ms,
        ..a.clone()
    };
    Ok((stored, created))
}

pub(super) async fn delete_agent(
    s: &PgStore,
    name: &str,
    by: &str,
    at_ms: i64,
) -> Result<bool, StoreError> {
    let mut tx = s.pool.begin().await?;
    let done = sqlx::query("delete from agents where name = $1")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    record(
        &mut tx,
        &AuditRow::new(AuditAction::AgentDelete, by, name, at_ms),
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

pub(super) async fn create_token(s: &PgStore, t: &TokenRow) -> Result<bool, StoreError> {
    let mut tx = s.pool.begin().await?;
    let done = sqlx::query(
        "insert into api_tokens (name, scope, secret_sha256, created_at_ms, created_by)
         values ($1, $2, $3, $4, $5) on conflict (name) do nothing",
    )
    .bind(pg_text(&t.name))
    .bind(t.scope.as_str())
    .bind(&t.secret_sha256)
    .bind(t.created_at_ms)
    .bind(pg_text(&t.created_by))
    .execute(&mut *tx)
    .await?;
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
    tx.commit().await?;
    Ok(true)
}

pub(super) async fn list_tokens(s: &PgStore) -> Result<Vec<TokenRow>, StoreError> {
    let rows = sqlx::query(&format!(
        "select {TOKEN_COLUMNS} from api_tokens order by name"
    ))
    .fetch_all(&s.pool)
    .await?;
    rows.iter().map(decode::token).collect()
}

pub(super) async fn find_token(
    s: &PgStore,
    secret_sha256: &str,
) -> Result<Option<TokenRow>, StoreError> {
    let row = sqlx::query(&format!(
        "select {TOKEN_COLUMNS} from api_tokens where secret_sha256 = $1"
    ))
    .bind(secret_sha256)
    .fetch_optional(&s.pool)
    .await?;
    row.as_ref().map(decode::token).transpose()
}

pub(super) async fn touch_token(s: &PgStore, name: &str, at_ms: i64) -> Result<(), StoreError> {
    sqlx::query(
        "update api_tokens set last_used_at_ms = $2
         where name = $1 and (last_used_at_ms is null or last_used_at_ms < $2)",
    )
    .bind(name)
    .bind(at_ms)
    .execute(&s.pool)
    .await?;
    Ok(())
}

pub(super) async fn revoke_token(
    s: &PgStore,
    name: &str,
    by: &str,
    at_ms: i64,
) -> Result<bool, StoreError> {
    let mut tx = s.pool.begin().await?;
    let done = sqlx::query("delete from api_tokens where name = $1")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    record(
        &mut tx,
        &AuditRow::new(AuditAction::TokenRevoke, by, name, at_ms),
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

pub(super) async fn audit_log(
    s: &PgStore,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<AuditRow>, StoreError> {
    let rows = sqlx::query(&format!(
        "select {AUDIT_COLUMNS} from audit_log
         where ($1::int8 is null or id < $1) order by id desc limit $2"
    ))
    .bind(before)
    .bind(i64::from(limit))
    .fetch_all(&s.pool)
    .await?;
    rows.iter().map(decode::audit).collect()
}
