//! Agents, API tokens and the audit log on SQLite: every change to agents or tokens
//! is recorded in the audit log in the same transaction.

use super::*;
use crate::store::decode::{AGENT_COLUMNS, AUDIT_COLUMNS};

pub(super) async fn list_agents(s: &SqliteStore) -> Result<Vec<AgentRow>, StoreError> {
    let rows = sqlx::query(&format!("select {AGENT_COLUMNS} from agents order by name"))
        .fetch_all(&s.pool)
        .await
        .map_err(classify)?;
    rows.iter().map(decode::agent).collect()
}

pub(super) async fn get_agent(s: &SqliteStore, name: &str) -> Result<Option<AgentRow>, StoreError> {
    let row = sqlx::query(&format!(
        "select {AGENT_COLUMNS} from agents where name = ?1"
    ))
    .bind(name)
    .fetch_optional(&s.pool)
    .await
    .map_err(classify)?;
    row.as_ref().map(decode::agent).transpose()
}

pub(super) async fn put_agent(
    s: &SqliteStore,
    a: &AgentRow,
    by: &str,
) -> Result<(AgentRow, bool), StoreError> {
    let mut tx = s.begin_write().await?;
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

pub(super) async fn delete_agent(
    s: &SqliteStore,
    name: &str,
    by: &str,
    at_ms: i64,
) -> Result<bool, StoreError> {
    let mut tx = s.begin_write().await?;
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

pub(super) async fn create_token(s: &SqliteStore, t: &TokenRow) -> Result<bool, StoreError> {
    let mut tx = s.begin_write().await?;
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

pub(super) async fn list_tokens(s: &SqliteStore) -> Result<Vec<TokenRow>, StoreError> {
    let rows = sqlx::query(&format!(
        "select {TOKEN_COLUMNS} from api_tokens order by name"
    ))
    .fetch_all(&s.pool)
    .await
    .map_err(classify)?;
    rows.iter().map(decode::token).collect()
}

pub(super) async fn find_token(
    s: &SqliteStore,
    secret_sha256: &str,
) -> Result<Option<TokenRow>, StoreError> {
    let row = sqlx::query(&format!(
        "select {TOKEN_COLUMNS} from api_tokens where secret_sha256 = ?1"
    ))
    .bind(secret_sha256)
    .fetch_optional(&s.pool)
    .await
    .map_err(classify)?;
    row.as_ref().map(decode::token).transpose()
}

pub(super) async fn touch_token(s: &SqliteStore, name: &str, at_ms: i64) -> Result<(), StoreError> {
    sqlx::query(
        "update api_tokens set last_used_at_ms = ?2
         where name = ?1 and (last_used_at_ms is null or last_used_at_ms < ?2)",
    )
    .bind(name)
    .bind(at_ms)
    .execute(&s.writer)
    .await
    .map_err(classify)?;
    Ok(())
}

pub(super) async fn revoke_token(
    s: &SqliteStore,
    name: &str,
    by: &str,
    at_ms: i64,
) -> Result<bool, StoreError> {
    let mut tx = s.begin_write().await?;
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

pub(super) async fn audit_log(
    s: &SqliteStore,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<AuditRow>, StoreError> {
    let rows = sqlx::query(&format!(
        "select {AUDIT_COLUMNS} from audit_log
         where (?1 is null or id < ?1) order by id desc limit ?2"
    ))
    .bind(before)
    .bind(i64::from(limit))
    .fetch_all(&s.pool)
    .await
    .map_err(classify)?;
    rows.iter().map(decode::audit).collect()
}
