//! `/api/v1/templates`: stored, versioned DAGs with parameters. A template is a run's
//! DAG plus `"params"` (each with an optional `default`), referenced anywhere in the
//! DAG as `{"$param": "name"}`. Every PUT stores a new version, validated as a
//! submission would be; `POST /api/v1/templates/{name}/runs` starts one.

use super::auth::{needs, Allowed};
use super::daily::{self, merge};
use super::error::ApiError;
use super::idempotency::{self, Outcome};
use super::AppState;
use crate::api_types::{ParamSpec, RunSummary, Template, TemplateList, TemplateRunRequest};
use crate::dag::origin::{RunOrigin, TemplateRef};
use crate::dag::{validate_submission, Dag, Problem, ProblemCode, RunSpec, ValidationErrors};
use crate::store::daily::TemplateRow;
use crate::views;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/templates", get(list_templates))
        .route(
            "/api/v1/templates/{name}",
            get(get_template).put(put_template),
        )
        .route("/api/v1/templates/{name}/runs", post(run_template))
}

/// Longest template, schedule or hook name.
pub const MAX_NAME: usize = 128;

/// A template, schedule or hook name: letters, digits, `_ - . :`.
pub fn check_name(what: &str, name: &str) -> Result<(), ApiError> {
    if crate::dag::is_valid_id(name, MAX_NAME) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "{what} name {name:?} must be 1 to {MAX_NAME} letters, digits, '_', '-', '.' or ':'"
        )))
    }
}

fn param_problem(message: String) -> ApiError {
    ApiError::InvalidDag(ValidationErrors(vec![Problem {
        code: ProblemCode::InvalidParam,
        message,
        tasks: vec![],
    }]))
}

/// Declared parameters, by name.
type Params = BTreeMap<String, ParamSpec>;

/// Splits a template body into its declared parameters and its DAG.
fn split(spec: &Value) -> Result<(Params, Map<String, Value>), ApiError> {
    let Value::Object(obj) = spec else {
        return Err(ApiError::InvalidJson(
            "a template must be a JSON object".into(),
        ));
    };
    let mut dag = obj.clone();
    let params: Params = match dag.remove("params") {
        None => BTreeMap::new(),
        Some(p) => super::body::from_value(&p)
            .map_err(|e| ApiError::InvalidJson(format!("params: {e}")))?,
    };
    for name in params.keys() {
        if !crate::dag::is_valid_id(name, MAX_NAME) {
            return Err(param_problem(format!(
                "parameter name {name:?} must be 1 to {MAX_NAME} letters, digits, '_', '-', '.' or ':'"
            )));
        }
    }
    Ok((params, dag))
}

/// Replaces every `{"$param": NAME}` object in `v` by the parameter's value. An
/// undeclared name is a problem.
pub fn substitute(v: &mut Value, values: &Map<String, Value>) -> Result<(), ApiError> {
    match v {
        Value::Object(m) if m.len() == 1 && m.contains_key("$param") => {
            let name = m["$param"].as_str().ok_or_else(|| {
                param_problem("{\"$param\": …} must name a parameter with a string".into())
            })?;
            *v = values
                .get(name)
                .cloned()
                .ok_or_else(|| param_problem(format!("{{\"$param\": {name:?}}} names no declared parameter; declare it under \"params\"")))?;
        }
        Value::Object(m) => {
            for item in m.values_mut() {
                substitute(item, values)?;
            }
        }
        Value::Array(items) => {
            for item in items {
                substitute(item, values)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The values a run uses: those given, then defaults. Undeclared or missing ones are
/// problems. With `placeholders`, a required parameter without a value is `null` (to
/// validate a template before any run gives it one).
pub fn bind(
    declared: &BTreeMap<String, ParamSpec>,
    given: &Map<String, Value>,
    placeholders: bool,
) -> Result<Map<String, Value>, ApiError> {
    let mut problems = Vec::new();
    for name in given.keys() {
        if !declared.contains_key(name) {
            problems.push(format!(
                "parameter {name:?} is not declared by the template"
            ));
        }
    }
    let mut values = Map::new();
    for (name, p) in declared {
        match given.get(name).or(p.default.as_ref()) {
            Some(v) => {
                values.insert(name.clone(), v.clone());
            }
            None if placeholders => {
                values.insert(name.clone(), Value::Null);
            }
            None => problems.push(format!(
                "parameter {name:?} is required (it has no default)"
            )),
        }
    }
    if problems.is_empty() {
        return Ok(values);
    }
    Err(ApiError::InvalidDag(ValidationErrors(
        problems
            .into_iter()
            .map(|message| Problem {
                code: ProblemCode::InvalidParam,
                message,
                tasks: vec![],
            })
            .collect(),
    )))
}

/// A template's DAG with `given` parameters, validated like a submission.
pub async fn instantiate(
    state: &AppState,
    spec: &Value,
    given: &Map<String, Value>,
    placeholders: bool,
) -> Result<Dag, ApiError> {
    let (declared, dag) = split(spec)?;
    let values = bind(&declared, given, placeholders)?;
    let mut dag = Value::Object(dag);
    substitute(&mut dag, &values)?;
    if dag.to_string().contains("\\u0000") {
        return Err(ApiError::BadRequest(
            "the DAG contains a NUL character (\\u0000), which cannot be stored".into(),
        ));
    }
    let mut spec: RunSpec =
        super::body::from_value(&dag).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    daily::check_ttl(spec.ttl_s)?;
    super::agents::resolve_registered(state.store.as_ref(), &mut spec).await?;
    validate_submission(spec, &state.limits).map_err(ApiError::InvalidDag)
}

/// Starts version `version` (or the latest) of template `name` with `params`.
pub async fn start_run(
    state: &AppState,
    name: &str,
    version: Option<u32>,
    params: &Map<String, Value>,
    origin: RunOrigin,
    by: &str,
) -> Result<crate::store::RunRow, ApiError> {
    let template = find(state, name, version).await?;
    let dag = instantiate(state, &template.spec, params, false).await?;
    let origin = merge(
        origin,
        RunOrigin {
            template: Some(TemplateRef {
                name: template.name.clone(),
                version: template.version,
            }),
            ..RunOrigin::default()
        },
    );
    daily::start(state, dag, origin, by).await
}

async fn find(state: &AppState, name: &str, version: Option<u32>) -> Result<TemplateRow, ApiError> {
    state
        .store
        .daily()
        .get_template(name, version)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(match version {
                Some(v) => format!("template {name} has no version {v}"),
                None => format!("template {name} not found"),
            })
        })
}

fn view(t: &TemplateRow, versions: &[u32]) -> Result<Template, ApiError> {
    // Stored only after `split` accepted it, so a failure here is the store's fault.
    let (params, _) = split(&t.spec).map_err(|e| {
        ApiError::Internal(format!("stored template {} v{}: {e}", t.name, t.version))
    })?;
    Ok(Template {
        name: t.name.clone(),
        version: t.version,
        versions: versions.to_vec(),
        params,
        spec: t.spec.clone(),
        created_at_ms: t.created_at_ms,
        created_by: t.created_by.clone(),
    })
}

/// Stores a new version of a template.
#[utoipa::path(put, path = "/api/v1/templates/{name}", tag = "templates", operation_id = "putTemplate",
    params(("name" = String, Path, description = "Template name: 1–128 of `A-Za-z0-9_-.:`", max_length = 128, pattern = r"^[A-Za-z0-9_.:-]+$")),
    request_body(content = Object, description = "A run's DAG plus optional `params`"),
    responses((status = 201, description = "Stored as a new version", body = Template),
              (status = 422, description = "The DAG is invalid (same problems as a submission)")))]
async fn put_template(
    allowed: Allowed<needs::Admin>,
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Template>), ApiError> {
    check_name("template", &name)?;
    let body = body.map_err(|e| match e {
        BytesRejection::FailedToBufferBody(_) => ApiError::PayloadTooLarge(state.max_body_bytes),
        other => ApiError::BadRequest(other.body_text()),
    })?;
    let spec: Value = super::body::parse(&body)?;
    instantiate(&state, &spec, &Map::new(), true).await?;
    let now = crate::engine::now_ms();
    let version = state
        .store
        .daily()
        .put_template(&name, &spec, allowed.name(), now)
        .await?;
    let stored = find(&state, &name, Some(version)).await?;
    let versions: Vec<u32> = (1..=version).collect();
    Ok((StatusCode::CREATED, Json(view(&stored, &versions)?)))
}

/// Every template: its latest version and the versions it has.
#[utoipa::path(get, path = "/api/v1/templates", tag = "templates", operation_id = "listTemplates",
    responses((status = 200, description = "Templates, by name", body = TemplateList)))]
async fn list_templates(
    _: Allowed<needs::Read>,
    State(state): State<AppState>,
) -> Result<Json<TemplateList>, ApiError> {
    let rows = state.store.daily().list_templates().await?;
    let mut out = Vec::new();
    for group in rows.chunk_by(|a, b| a.name == b.name) {
        let versions: Vec<u32> = group.iter().map(|t| t.version).collect();
        let latest = group.last().expect("chunks are not empty");
        out.push(view(latest, &versions)?);
    }
    Ok(Json(TemplateList { templates: out }))
}

/// One template: its latest version, or `?version=N`.
#[utoipa::path(get, path = "/api/v1/templates/{name}", tag = "templates", operation_id = "getTemplate",
    params(("name" = String, Path, description = "Template name: 1–128 of `A-Za-z0-9_-.:`", max_length = 128, pattern = r"^[A-Za-z0-9_.:-]+$"),
           ("version" = Option<u32>, Query, description = "A version; the latest when absent")),
    responses((status = 200, description = "The template", body = Template), (status = 404, description = "No such template")))]
async fn get_template(
    _: Allowed<needs::Read>,
    State(state): State<AppState>,
    Path(name): Path<String>,
    query: Result<axum::extract::Query<VersionParam>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Template>, ApiError> {
    let axum::extract::Query(q) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let t = find(&state, &name, q.version).await?;
    let latest = find(&state, &name, None).await?.version;
    let versions: Vec<u32> = (1..=latest).collect();
    Ok(Json(view(&t, &versions)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionParam {
    version: Option<u32>,
}

/// Starts a run of a template; honours `Idempotency-Key` as `POST /api/v1/runs` does.
#[utoipa::path(post, path = "/api/v1/templates/{name}/runs", tag = "templates", operation_id = "runTemplate",
    params(("name" = String, Path, description = "Template name: 1–128 of `A-Za-z0-9_-.:`", max_length = 128, pattern = r"^[A-Za-z0-9_.:-]+$")),
    request_body = TemplateRunRequest,
    responses((status = 201, description = "The run started", body = RunSummary),
              (status = 200, description = "A repeat of an idempotent request: its run", body = RunSummary),
              (status = 404, description = "No such template, or no such version of it", body = crate::api_types::ErrorResponse),
              (status = 409, description = "The Idempotency-Key was used with another request"),
              (status = 422, description = "Parameters or the resulting DAG are invalid")))]
async fn run_template(
    allowed: Allowed<needs::Submit>,
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<RunSummary>), ApiError> {
    let key = idempotency::key(&headers)?;
    let body = body.map_err(|e| match e {
        BytesRejection::FailedToBufferBody(_) => ApiError::PayloadTooLarge(state.max_body_bytes),
        other => ApiError::BadRequest(other.body_text()),
    })?;
    let req: TemplateRunRequest = if body.is_empty() {
        TemplateRunRequest::default()
    } else {
        super::body::parse(&body)?
    };
    let by = allowed.name();
    let (status, run) = match key {
        Some(key) => {
            let request = idempotency::digest(&[name.as_bytes(), &body]);
            let outcome = state
                .daily
                .idempotency
                .once(state.store.as_ref(), by, &key, request, |origin| {
                    start_run(&state, &name, req.version, &req.params, origin, by)
                })
                .await?;
            match outcome {
                Outcome::Created(run) => (StatusCode::CREATED, run),
                Outcome::Repeated(run) => (StatusCode::OK, run),
            }
        }
        None => {
            let run = start_run(
                &state,
                &name,
                req.version,
                &req.params,
                RunOrigin::default(),
                by,
            )
            .await?;
            (StatusCode::CREATED, run)
        }
    };
    Ok((status, Json(views::summary(&run))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn params_are_substituted_wherever_they_are_referenced() {
        let mut dag = json!({"tasks": [{"id": "a", "handler": "echo",
            "input": {"topic": {"$param": "topic"}, "list": [{"$param": "n"}], "keep": {"$param": 1, "x": 2}}}]});
        let values = json!({"topic": "tides", "n": 3})
            .as_object()
            .unwrap()
            .clone();
        // An object with more keys than `$param` is left alone.
        let mut keep = dag.clone();
        keep["tasks"][0]["input"]["keep"] = json!({"$param": 1, "x": 2});
        substitute(&mut dag, &values).unwrap();
        assert_eq!(dag["tasks"][0]["input"]["topic"], "tides");
        assert_eq!(dag["tasks"][0]["input"]["list"], json!([3]));
        assert_eq!(
            dag["tasks"][0]["input"]["keep"],
            json!({"$param": 1, "x": 2})
        );
        let mut unknown = json!({"x": {"$param": "nope"}});
        assert!(substitute(&mut unknown, &values).is_err());
    }

    #[test]
    fn given_values_win_over_defaults_and_missing_or_undeclared_ones_are_problems() {
        let declared: BTreeMap<String, ParamSpec> = serde_json::from_value(json!({
            "topic": {"default": "tides"}, "who": {}
        }))
        .unwrap();
        let given = json!({"who": "ana"}).as_object().unwrap().clone();
        let v = bind(&declared, &given, false).unwrap();
        assert_eq!(v["topic"], "tides");
        assert_eq!(v["who"], "ana");
        let Err(ApiError::InvalidDag(e)) = bind(&declared, &Map::new(), false) else {
            panic!("a required parameter is missing")
        };
        assert!(e.0[0].message.contains("\"who\" is required"));
        assert_eq!(
            bind(&declared, &Map::new(), true).unwrap()["who"],
            Value::Null
        );
        let typo = json!({"who": "ana", "topik": "x"})
            .as_object()
            .unwrap()
            .clone();
        assert!(bind(&declared, &typo, false).is_err());
    }
}
