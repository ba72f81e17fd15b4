//! Templates, schedules and hooks as the API shows them: the server renders these and
//! `apex templates|schedules|hooks` read them.

use super::RunSummary;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// One version of a template, with the versions it has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Template {
    pub name: String,
    /// This version, from 1.
    #[schema(minimum = 1)]
    pub version: u32,
    /// Every version the template has, oldest first.
    pub versions: Vec<u32>,
    /// Its declared parameters, by name.
    pub params: BTreeMap<String, ParamSpec>,
    /// The stored TemplateSpec: a run's DAG plus `params`.
    #[schema(value_type = Object)]
    pub spec: Value,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// The token that stored this version.
    pub created_by: String,
}

/// A declared parameter of a template.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    /// Used when a run gives none; without one, the parameter is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Starting a run of a template.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateRunRequest {
    /// Values of the template's parameters, by name.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub params: Map<String, Value>,
    /// The version to run; the latest when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
}

/// Every template: its latest version, by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TemplateList {
    pub templates: Vec<Template>,
}

/// What a tick does while the schedule's previous run is still running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
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

/// A stored schedule: its spec (with `paused` as it is now) and when it fires.
// The spec's fields are spelled out rather than flattened: ScheduleSpec refuses unknown
// fields, and a flattened schema would then refuse `name` and the rest in the document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Schedule {
    pub name: String,
    pub template: String,
    /// The fixed template version, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    #[schema(value_type = Object)]
    pub params: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    pub paused: bool,
    pub overlap: Overlap,
    pub catch_up: bool,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// The last tick (fired or skipped); null before the first.
    #[schema(required = true)]
    pub last_tick_ms: Option<i64>,
    /// When it fires next; null when paused or never again.
    #[schema(required = true)]
    pub next_fire_ms: Option<i64>,
    /// `GET /api/v1/schedules/{name}` only: its most recent runs, newest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recent_runs: Option<Vec<RunSummary>>,
}

/// Every schedule, by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScheduleList {
    pub schedules: Vec<Schedule>,
}

/// A hook as PUT.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HookSpec {
    /// The template a delivery starts (its latest version).
    #[schema(min_length = 1)]
    pub template: String,
    /// The shared secret deliveries are signed with; at least 16 characters.
    #[schema(min_length = 16)]
    pub secret: String,
}

/// A hook (never its secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Hook {
    pub name: String,
    /// The template a delivery starts (its latest version).
    pub template: String,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// Every hook, by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HookList {
    pub hooks: Vec<Hook>,
}
