//! `/api/v1/agents`: the registry of named agents that runs' tasks may use by name.

use super::auth::{needs, Allowed};
use super::error::ApiError;
use super::AppState;
use crate::api_types as t;
use crate::dag::{validate_agent, AgentSpec, RunSpec};
use crate::store::{AgentRow, Store};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/agents", get(list_agents))
        .route(
            "/api/v1/agents/{name}",
            get(get_agent).put(put_agent).delete(delete_agent),
        )
}

/// An agent as the API shows it: its spec with every field, its name and times.
pub fn view(a: &AgentRow) -> t::Agent {
    let s = &a.spec;
    t::Agent {
        name: a.name.clone(),
        provider: s.provider.clone(),
        model: s.model.clone(),
        system_prompt: s.system_prompt.clone(),
        temperature: s.temperature,
        max_output_tokens: s.max_output_tokens,
        max_concurrency: s.max_concurrency,
        price: s.price,
        created_at_ms: a.created_at_ms,
        updated_at_ms: a.updated_at_ms,
    }
}

/// Every registered agent. Needs scope `read`.
#[utoipa::path(get, path = "/api/v1/agents", tag = "agents", operation_id = "listAgents",
    responses((status = 200, description = "The registry.", body = t::AgentList)))]
pub(super) async fn list_agents(
    _: Allowed<needs::Read>,
    State(state): State<AppState>,
) -> Result<Json<t::AgentList>, ApiError> {
    let agents = state.store.list_agents().await?;
    Ok(Json(t::AgentList {
        agents: agents.iter().map(view).collect(),
    }))
}

/// One registered agent. Needs scope `read`.
#[utoipa::path(get, path = "/api/v1/agents/{name}", tag = "agents", operation_id = "getAgent",
    params(("name" = String, Path, description = "Agent name.")),
    responses(
        (status = 200, description = "The agent.", body = t::Agent),
        (status = 404, description = "`not_found`: no such agent.", body = t::ErrorResponse),
    ))]
pub(super) async fn get_agent(
    _: Allowed<needs::Read>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<t::Agent>, ApiError> {
    let agent = state
        .store
        .get_agent(&name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("agent {name} not found")))?;
    Ok(Json(view(&agent)))
}

/// Register or replace an agent. Runs submitted later that name it get a copy; runs
/// already submitted keep theirs. Needs scope `admin`.
#[utoipa::path(put, path = "/api/v1/agents/{name}", tag = "agents", operation_id = "putAgent",
    params(("name" = String, Path, description = "Agent name: 1–128 characters of `A-Za-z0-9_-.:`.")),
    request_body = t::AgentSpec,
    responses(
        (status = 200, description = "Replaced.", body = t::Agent),
        (status = 201, description = "Registered.", body = t::Agent),
        (status = 413, description = "`payload_too_large`.", body = t::ErrorResponse),
        (status = 422, description = "`invalid_agent`: `details` lists every problem.", body = t::ErrorResponse),
    ))]
pub(super) async fn put_agent(
    allowed: Allowed<needs::Admin>,
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<t::Agent>), ApiError> {
    let body = body.map_err(|e| match e {
        BytesRejection::FailedToBufferBody(_) => ApiError::PayloadTooLarge(state.max_body_bytes),
        other => ApiError::BadRequest(other.body_text()),
    })?;
    let spec: AgentSpec = super::body::parse(&body)?;
    validate_agent(&name, &spec, &state.limits).map_err(ApiError::InvalidAgent)?;
    let now = crate::engine::now_ms();
    let row = AgentRow {
        name,
        spec,
        created_at_ms: now,
        updated_at_ms: now,
    };
    let (row, created) = state.store.put_agent(&row, allowed.name()).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view(&row))))
}

/// Remove an agent from the registry; runs that copied it keep their copy. Needs scope
/// `admin`.
#[utoipa::path(delete, path = "/api/v1/agents/{name}", tag = "agents", operation_id = "deleteAgent",
    params(("name" = String, Path, description = "Agent name.")),
    responses(
        (status = 204, description = "Removed."),
        (status = 404, description = "`not_found`: no such agent.", body = t::ErrorResponse),
    ))]
pub(super) async fn delete_agent(
    allowed: Allowed<needs::Admin>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let at_ms = crate::engine::now_ms();
    if state
        .store
        .delete_agent(&name, allowed.name(), at_ms)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("agent {name} not found")))
    }
}

/// Copies into `spec` every registered agent its tasks name but it does not define:
/// the run keeps that snapshot, so changing the registry later does not change it.
/// Agents named by the built-in fan-out (`input.fan_out.agent`) count too: the children
/// it spawns are validated against the run's agents.
pub async fn resolve_registered(store: &dyn Store, spec: &mut RunSpec) -> Result<(), ApiError> {
    let fan_out = |t: &crate::dag::TaskSpec| {
        t.input
            .pointer("/fan_out/agent")
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let mut wanted: Vec<String> = spec
        .tasks
        .iter()
        .flat_map(|t| [t.agent.clone(), fan_out(t)])
        .flatten()
        .filter(|a| !spec.agents.contains_key(a))
        .collect();

    wanted.sort();
    wanted.dedup();
    for name in wanted {
        // An unknown name is left for validation to report with the others.
        if let Some(a) = store.get_agent(&name).await? {
            spec.agents.insert(name, a.spec);
        }
    }
    Ok(())
}
