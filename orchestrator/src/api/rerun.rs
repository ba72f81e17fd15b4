//! `POST /api/v1/runs/{id}/rerun`: a new run from chosen tasks of a finished one. What
//! is not downstream of them keeps its stored output and is never dispatched, so tuning
//! one agent does not pay for the whole swarm again.

use super::auth::{needs, Allowed};
use super::error::ApiError;
use super::AppState;
use crate::dag::{validate, AgentSpec, RerunOf, RunOptions, RunSpec, TaskSpec};
use crate::state_machine::TaskState;
use crate::store::StoredTask;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/runs/{id}/rerun", post(rerun))
}

/// What to run again, and what to change first.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RerunRequest {
    /// Tasks to run again; everything downstream of them runs again too.
    pub from: Vec<String>,
    #[serde(default)]
    pub overrides: Overrides,
}

/// Changes applied to the new run before it starts.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    /// Per agent name, fields merged into the run's agent (e.g. `{"model": "m2"}`).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub agents: BTreeMap<String, Value>,
    /// Per task id (of a task that runs again), what replaces its spec's fields.
    #[serde(default)]
    pub tasks: BTreeMap<String, TaskOverride>,
}

/// What replaces a re-run task's fields.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskOverride {
    /// Replaces the task's input.
    pub input: Value,
}

/// Starts a new run from tasks of a finished run, reusing the outputs of the rest.
#[utoipa::path(post, path = "/api/v1/runs/{id}/rerun", tag = "runs", operation_id = "rerunRun",
    params(("id" = String, Path, description = "Run id of a finished run.")),
    request_body(content = RerunRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "The new run, started.", body = crate::api_types::RunSummary),
        (status = 404, description = "`not_found`: no such run.", body = crate::api_types::ErrorResponse),
        (status = 409, description = "`conflict`: the run is still running.", body = crate::api_types::ErrorResponse),
        (status = 422, description = "`invalid_rerun`: `from` or an override names a task or agent the run does not have, or a task that is reused.", body = crate::api_types::ErrorResponse),
    ))]
pub async fn rerun(
    allowed: Allowed<needs::Submit>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<crate::api_types::RunSummary>), ApiError> {
    let raw = raw.map_err(|e| match e {
        BytesRejection::FailedToBufferBody(_) => ApiError::PayloadTooLarge(state.max_body_bytes),
        other => ApiError::BadRequest(other.body_text()),
    })?;
    if super::runs::has_nul_escape(&raw) {
        return Err(ApiError::BadRequest(
            "the request contains a NUL character (\\u0000), which cannot be stored; remove it"
                .into(),
        ));
    }
    let req: RerunRequest = super::body::parse(&raw)?;
    let run = state
        .store
        .get_run(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("run {id} not found")))?;
    if !run.state.is_terminal() {
        return Err(ApiError::Conflict(format!(
            "run {id} is still running; re-run from its tasks once it has finished"
        )));
    }
    let stored = state.store.get_tasks(&id).await?;
    let plan = plan(&stored, &req)?;
    let mut options = RunOptions::clone(&run.options);
    options.agents = merge_agents(&options.agents, &req.overrides.agents)?;
    options.rerun_of = None;
    let spec = RunSpec::from_parts(run.name.clone(), run.queue.clone(), plan.specs, options);
    // `validate`, not `validate_submission`: reused spawned children keep their `parent`.
    let mut dag = validate(spec, &state.limits).map_err(ApiError::InvalidDag)?;
    let mut options = RunOptions::clone(&dag.options);
    options.rerun_of = Some(RerunOf {
        run: id.clone(),
        from: req.from.clone(),
        reused: plan.reused.iter().map(|(t, _)| t.clone()).collect(),
    });
    dag.options = Arc::new(options);
    let reused = plan
        .reused
        .into_iter()
        .filter_map(|(t, out)| dag.index_of(&t).map(|i| (i, out)))
        .collect();
    let new = state
        .engine
        .submit_reusing(dag, reused, allowed.name())
        .await?;
    Ok((StatusCode::CREATED, Json(crate::views::summary(&new))))
}

/// The new run's tasks, and which of them start with a stored output.
#[derive(Debug)]
struct Plan {
    specs: Vec<TaskSpec>,
    reused: Vec<(String, Option<Value>)>,
}

/// Decides what runs again: `from`, every task that did not succeed, and everything
/// downstream of those. Children spawned by a task that runs again are left out (it
/// spawns them anew); the rest keep their outputs.
fn plan(stored: &[StoredTask], req: &RerunRequest) -> Result<Plan, ApiError> {
    let index: HashMap<&str, usize> = stored
        .iter()
        .enumerate()
        .map(|(i, t)| (t.row.task_id.as_str(), i))
        .collect();
    if req.from.is_empty() {
        return Err(ApiError::InvalidRerun(
            "from: name at least one task to run again".into(),
        ));
    }
    let unknown: Vec<&str> = req
        .from
        .iter()
        .map(String::as_str)
        .filter(|t| !index.contains_key(t))
        .collect();
    if !unknown.is_empty() {
        return Err(ApiError::InvalidRerun(format!(
            "from: the run has no task {}",
            quoted(&unknown)
        )));
    }
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); stored.len()];
    for (i, t) in stored.iter().enumerate() {
        for d in &t.spec.depends_on {
            if let Some(&p) = index.get(d.as_str()) {
                dependents[p].push(i);
            }
        }
    }
    let mut again = vec![false; stored.len()];
    let mut stack: Vec<usize> = req.from.iter().map(|t| index[t.as_str()]).collect();
    stack.extend(
        stored
            .iter()
            .enumerate()
            .filter(|(_, t)| t.row.state != TaskState::Succeeded)
            .map(|(i, _)| i),
    );
    while let Some(i) = stack.pop() {
        if !std::mem::replace(&mut again[i], true) {
            stack.extend(&dependents[i]);
        }
    }
    // A spawned child depends on its parent, so every descendant of a re-run parent
    // is itself marked; it is dropped when its parent runs again.
    let dropped: HashSet<&str> = stored
        .iter()
        .filter(|t| {
            t.spec
                .parent
                .as_deref()
                .and_then(|p| index.get(p))
                .is_some_and(|&p| again[p])
        })
        .map(|t| t.row.task_id.as_str())
        .collect();
    let spawned: Vec<&str> = req
        .from
        .iter()
        .map(String::as_str)
        .filter(|t| dropped.contains(t))
        .collect();
    if !spawned.is_empty() {
        return Err(ApiError::InvalidRerun(format!(
            "from: {} spawned by a task that runs again, which spawns its children anew; re-run from that task",
            quoted(&spawned)
        )));
    }
    let unknown: Vec<&str> = req
        .overrides
        .tasks
        .keys()
        .map(String::as_str)
        .filter(|t| !index.contains_key(t))
        .collect();
    if !unknown.is_empty() {
        return Err(ApiError::InvalidRerun(format!(
            "overrides.tasks: the run has no task {}",
            quoted(&unknown)
        )));
    }
    let reused_named: Vec<&str> = req
        .overrides
        .tasks
        .keys()
        .map(String::as_str)
        .filter(|t| !again[index[t]] || dropped.contains(t))
        .collect();
    if !reused_named.is_empty() {
        return Err(ApiError::InvalidRerun(format!(
            "overrides.tasks: {} not run again (its output is reused, or it is spawned anew); add it to from",
            quoted(&reused_named)
        )));
    }
    let mut specs = Vec::with_capacity(stored.len());
    let mut reused = Vec::new();
    for (i, t) in stored.iter().enumerate() {
        let id = t.row.task_id.as_str();
        if dropped.contains(id) {
            continue;
        }
        let mut spec = t.spec.clone();
        if again[i] {
            spec.depends_on.retain(|d| !dropped.contains(d.as_str()));
            if let Some(o) = req.overrides.tasks.get(id) {
                spec.input = o.input.clone();
            }
        } else {
            reused.push((id.to_owned(), t.row.output.clone()));
        }
        specs.push(spec);
    }
    Ok(Plan { specs, reused })
}

/// The run's agents with each override's fields merged in.
fn merge_agents(
    agents: &BTreeMap<String, AgentSpec>,
    overrides: &BTreeMap<String, Value>,
) -> Result<BTreeMap<String, AgentSpec>, ApiError> {
    let unknown: Vec<&str> = overrides
        .keys()
        .map(String::as_str)
        .filter(|a| !agents.contains_key(*a))
        .collect();
    if !unknown.is_empty() {
        return Err(ApiError::InvalidRerun(format!(
            "overrides.agents: the run has no agent {}",
            quoted(&unknown)
        )));
    }
    let mut out = agents.clone();
    for (name, patch) in overrides {
        let Value::Object(patch) = patch else {
            return Err(ApiError::InvalidRerun(format!(
                "overrides.agents.{name}: must be an object of agent fields"
            )));
        };
        let agent = &agents[name];
        // The endpoint and key variable are not serialized (they never leave the
        // server), so they are carried over unless the override sets them.
        let mut merged =
            serde_json::to_value(agent).map_err(|e| ApiError::Internal(e.to_string()))?;
        for (k, v) in patch {
            merged[k] = v.clone();
        }
        let mut spec: AgentSpec = serde_json::from_value(merged)
            .map_err(|e| ApiError::InvalidRerun(format!("overrides.agents.{name}: {e}")))?;
        if !patch.contains_key("base_url") {
            spec.base_url = agent.base_url.clone();
        }
        if !patch.contains_key("api_key_env") {
            spec.api_key_env = agent.api_key_env.clone();
        }
        out.insert(name.clone(), spec);
    }
    Ok(out)
}

fn quoted(ids: &[&str]) -> String {
    ids.iter()
        .map(|t| format!("{t:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `reused_from` mark of a task view, for runs made by a re-run.
pub(super) fn mark_reused(options: &RunOptions, tasks: &mut [crate::api_types::Task]) {
    let Some(of) = &options.rerun_of else {
        return;
    };
    let reused: HashSet<&str> = of.reused.iter().map(String::as_str).collect();
    for t in tasks {
        if reused.contains(t.id.as_str()) {
            t.reused_from = Some(of.run.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TaskRow;
    use serde_json::json;

    fn task(id: &str, deps: &[&str], state: TaskState, parent: Option<&str>) -> StoredTask {
        let spec: TaskSpec = serde_json::from_value(json!({
            "id": id, "handler": "h", "depends_on": deps, "input": {"v": id}
        }))
        .unwrap();
        let spec = TaskSpec {
            parent: parent.map(str::to_owned),
            ..spec
        };
        let row = TaskRow {
            run_id: "old".into(),
            task_id: id.into(),
            idx: 0,
            state,
            attempt: 1,
            failures: 0,
            lost: 0,
            output: Some(json!({"out": id})),
            error: None,
            worker_id: None,
            queued_at_ms: None,
            started_at_ms: None,
            finished_at_ms: None,
            usage: Default::default(),
            charges: Default::default(),
            rev: 0,
        };
        StoredTask { spec, row }
    }

    fn req(from: &[&str], tasks: Value) -> RerunRequest {
        serde_json::from_value(json!({"from": from, "overrides": {"tasks": tasks}})).unwrap()
    }

    fn ids(p: &Plan) -> (Vec<&str>, Vec<&str>) {
        (
            p.specs.iter().map(|s| s.id.as_str()).collect(),
            p.reused.iter().map(|(t, _)| t.as_str()).collect(),
        )
    }

    #[test]
    fn only_the_from_tasks_and_their_downstream_run_again() {
        use TaskState::Succeeded as S;
        let stored = vec![
            task("plan", &[], S, None),
            task("r1", &["plan"], S, None),
            task("critic", &["r1"], S, None),
            task("writer", &["critic"], S, None),
        ];
        let p = plan(
            &stored,
            &req(&["critic"], json!({"critic": {"input": {"x": 2}}})),
        )
        .unwrap();
        assert_eq!(ids(&p).1, vec!["plan", "r1"]);
        assert_eq!(p.reused[0].1, Some(json!({"out": "plan"})));
        assert_eq!(p.specs[2].input, json!({"x": 2}));
        assert_eq!(p.specs[3].input, json!({"v": "writer"}));
    }

    #[test]
    fn children_of_a_rerun_task_are_dropped_and_of_a_reused_one_kept() {
        use TaskState::Succeeded as S;
        let stored = vec![
            task("a", &[], S, None),
            task("a.x", &["a"], S, Some("a")),
            task("b", &["a", "a.x"], S, None),
            task("b.y", &["b"], S, Some("b")),
            task("c", &["b", "b.y"], S, None),
        ];
        let p = plan(&stored, &req(&["b"], json!({}))).unwrap();
        assert_eq!(ids(&p), (vec!["a", "a.x", "b", "c"], vec!["a", "a.x"]));
        assert_eq!(p.specs[3].depends_on, vec!["b".to_owned()]);
    }

    #[test]
    fn tasks_that_did_not_succeed_run_again_too() {
        let stored = vec![
            task("a", &[], TaskState::Succeeded, None),
            task("b", &[], TaskState::Failed, None),
            task("c", &["a"], TaskState::Succeeded, None),
        ];
        let p = plan(&stored, &req(&["c"], json!({}))).unwrap();
        assert_eq!(ids(&p).1, vec!["a"]);
    }

    #[test]
    fn unknown_and_reused_names_are_refused_by_name() {
        let stored = vec![
            task("a", &[], TaskState::Succeeded, None),
            task("b", &["a"], TaskState::Succeeded, None),
        ];
        let e = plan(&stored, &req(&["nope"], json!({}))).unwrap_err();
        assert!(e.to_string().contains("\"nope\""), "{e}");
        let e = plan(&stored, &req(&["b"], json!({"ghost": {"input": 1}}))).unwrap_err();
        assert!(e.to_string().contains("\"ghost\""), "{e}");
        let e = plan(&stored, &req(&["b"], json!({"a": {"input": 1}}))).unwrap_err();
        assert!(e.to_string().contains("\"a\""), "{e}");
        assert!(plan(&stored, &req(&[], json!({}))).is_err());
        let e =
            merge_agents(&BTreeMap::new(), &BTreeMap::from([("w".into(), json!({}))])).unwrap_err();
        assert!(e.to_string().contains("\"w\""), "{e}");
    }
}
