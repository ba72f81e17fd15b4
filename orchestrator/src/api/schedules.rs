//! `/api/v1/schedules`: start a template's runs on a cron or every N seconds. The
//! leader's ticker (`crate::ticker`) fires them; this module stores, shows (with the
//! next fire time), pauses, resumes and deletes them.

use super::auth::{needs, Allowed};
use super::error::ApiError;
use super::templates::{check_name, instantiate};
use super::AppState;
use crate::schedule::Timing;
use crate::store::daily::ScheduleRow;
use crate::views;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/schedules", get(list_schedules))
        .route(
            "/api/v1/schedules/{name}",
            get(get_schedule).put(put_schedule).delete(delete_schedule),
        )
        .route("/api/v1/schedules/{name}/pause", post(pause))
        .route("/api/v1/schedules/{name}/resume", post(resume))
}

/// What a tick does while the schedule's previous run is still running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// The tick starts no run.
    #[default]
    Skip,
    /// The tick starts a run anyway.
    Allow,
}

fn yes() -> bool {
    true
}

/// A schedule as PUT.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// The template each tick runs.
    pub template: String,
    /// A fixed template version; the latest at each tick when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub params: Map<String, Value>,
    /// 5 fields (minute hour day month weekday), or 6 with seconds first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// Seconds between ticks, instead of `cron`: 1 to a year.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 31_536_000)]
    pub every_s: Option<u64>,
    /// IANA time zone the cron is read in; UTC when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default)]
    pub paused: bool,
    #[serde(default)]
    pub overlap: Overlap,
    /// Ticks missed while no orchestrator led fire once (true), or are skipped.
    #[serde(default = "yes")]
    pub catch_up: bool,
}

impl ScheduleSpec {
    /// The stored spec of a row.
    pub fn of(row: &ScheduleRow) -> Result<Self, ApiError> {
        serde_json::from_value(row.spec.clone())
            .map_err(|e| ApiError::Internal(format!("stored schedule {}: {e}", row.name)))
    }

    /// When its ticks fall; a schedule counts intervals from its creation.
    pub fn timing(&self, anchor_ms: i64) -> Result<Timing, ApiError> {
        Timing::parse(
            self.cron.as_deref(),
            self.every_s,
            self.timezone.as_deref(),
            anchor_ms,
        )
        .map_err(|e| ApiError::InvalidSchedule(e.to_string()))
    }
}

/// When a stored schedule fires next; `None` when paused or never again.
pub fn next_fire_ms(row: &ScheduleRow, spec: &ScheduleSpec) -> Option<i64> {
    if row.paused {
        return None;
    }
    let timing = spec.timing(row.created_at_ms).ok()?;
    timing.next_after(row.last_tick_ms.unwrap_or(row.created_at_ms))
}

fn view(row: &ScheduleRow) -> Value {
    let Ok(spec) = ScheduleSpec::of(row) else {
        return json!({"name": row.name, "error": "the stored schedule cannot be read"});
    };
    let mut v = serde_json::to_value(&spec).unwrap_or(Value::Null);
    v["name"] = json!(row.name);
    v["paused"] = json!(row.paused);
    v["created_at_ms"] = json!(row.created_at_ms);
    v["updated_at_ms"] = json!(row.updated_at_ms);
    v["last_tick_ms"] = json!(row.last_tick_ms);
    v["next_fire_ms"] = json!(next_fire_ms(row, &spec));
    v
}

async fn find(state: &AppState, name: &str) -> Result<ScheduleRow, ApiError> {
    state
        .store
        .daily()
        .get_schedule(name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("schedule {name} not found")))
}

/// Creates or replaces a schedule.
#[utoipa::path(put, path = "/api/v1/schedules/{name}", tag = "schedules", operation_id = "putSchedule",
    params(("name" = String, Path, description = "Schedule name: 1–128 of `A-Za-z0-9_-.:`", max_length = 128, pattern = r"^[A-Za-z0-9_.:-]+$")),
    request_body = ScheduleSpec,
    responses((status = 201, description = "Created"), (status = 200, description = "Replaced"),
              (status = 400, description = "A body that is not a schedule"), (status = 404, description = "No such template"),
              (status = 422, description = "`invalid_schedule`: both or neither of `cron` and `every_s`, a bad cron or time zone; or `invalid_dag`: the template's DAG with these params is invalid")))]
async fn put_schedule(
    _: Allowed<needs::Admin>,
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    check_name("schedule", &name)?;
    let body = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let spec: ScheduleSpec = super::body::parse(&body)?;
    spec.timing(0)?;
    let template = state
        .store
        .daily()
        .get_template(&spec.template, spec.version)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("template {} not found", spec.template)))?;
    instantiate(&state, &template.spec, &spec.params, false).await?;
    let now = crate::engine::now_ms();
    let row = ScheduleRow {
        name: name.clone(),
        spec: serde_json::to_value(&spec).map_err(|e| ApiError::Internal(e.to_string()))?,
        paused: spec.paused,
        created_at_ms: now,
        updated_at_ms: now,
        last_tick_ms: None,
    };
    let created = state.store.daily().put_schedule(&row).await?;
    let stored = find(&state, &name).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view(&stored))))
}

/// Every schedule, with its next fire time.
#[utoipa::path(get, path = "/api/v1/schedules", tag = "schedules", operation_id = "listSchedules",
    responses((status = 200, description = "Schedules, by name")))]
async fn list_schedules(
    _: Allowed<needs::Read>,
    State(state): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    let rows = state.store.daily().list_schedules().await?;
    Ok(Json(
        json!({"schedules": rows.iter().map(view).collect::<Vec<_>>()}),
    ))
}

/// One schedule, with its next fire time and its most recent runs.
#[utoipa::path(get, path = "/api/v1/schedules/{name}", tag = "schedules", operation_id = "getSchedule",
    params(("name" = String, Path, description = "Schedule name: 1–128 of `A-Za-z0-9_-.:`", max_length = 128, pattern = r"^[A-Za-z0-9_.:-]+$")),
    responses((status = 200, description = "The schedule"), (status = 404, description = "No such schedule")))]
async fn get_schedule(
    _: Allowed<needs::Read>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let row = find(&state, &name).await?;
    let runs = state.store.daily().schedule_runs(&name, 20).await?;
    let mut v = view(&row);
    v["recent_runs"] = runs.iter().map(views::run_summary).collect();
    Ok(Json(v))
}

/// Removes a schedule: no tick fires after this answers.
#[utoipa::path(delete, path = "/api/v1/schedules/{name}", tag = "schedules", operation_id = "deleteSchedule",
    params(("name" = String, Path, description = "Schedule name: 1–128 of `A-Za-z0-9_-.:`", max_length = 128, pattern = r"^[A-Za-z0-9_.:-]+$")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "No such schedule")))]
async fn delete_schedule(
    _: Allowed<needs::Admin>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let _ticker = state.daily.schedules.lock().await;
    if !state.store.daily().delete_schedule(&name).await? {
        return Err(ApiError::NotFound(format!("schedule {name} not found")));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Stops a schedule's ticks until it is resumed.
#[utoipa::path(post, path = "/api/v1/schedules/{name}/pause", tag = "schedules", operation_id = "pauseSchedule",
    params(("name" = String, Path, description = "Schedule name: 1–128 of `A-Za-z0-9_-.:`", max_length = 128, pattern = r"^[A-Za-z0-9_.:-]+$")),
    responses((status = 200, description = "Paused"), (status = 404, description = "No such schedule")))]
async fn pause(
    allowed: Allowed<needs::Operate>,
    state: State<AppState>,
    name: Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_paused(allowed, state, name, true).await
}

/// Resumes a paused schedule; ticks that fell while it was paused do not fire.
#[utoipa::path(post, path = "/api/v1/schedules/{name}/resume", tag = "schedules", operation_id = "resumeSchedule",
    params(("name" = String, Path, description = "Schedule name: 1–128 of `A-Za-z0-9_-.:`", max_length = 128, pattern = r"^[A-Za-z0-9_.:-]+$")),
    responses((status = 200, description = "Resumed"), (status = 404, description = "No such schedule")))]
async fn resume(
    allowed: Allowed<needs::Operate>,
    state: State<AppState>,
    name: Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_paused(allowed, state, name, false).await
}

async fn set_paused(
    _: Allowed<needs::Operate>,
    State(state): State<AppState>,
    Path(name): Path<String>,
    paused: bool,
) -> Result<Json<Value>, ApiError> {
    let _ticker = state.daily.schedules.lock().await;
    let now = crate::engine::now_ms();
    let daily = state.store.daily();
    if !paused {
        // Ticks that fell while paused are not owed: count from now.
        daily.set_schedule_tick(&name, now).await?;
    }
    if !daily.set_schedule_paused(&name, paused, now).await? {
        return Err(ApiError::NotFound(format!("schedule {name} not found")));
    }
    Ok(Json(view(&find(&state, &name).await?)))
}
