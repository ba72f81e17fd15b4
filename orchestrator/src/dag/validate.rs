//! Validation of a submitted [`RunSpec`]: every problem is found and reported at once,
//! each naming the tasks involved, and only a valid spec becomes a sealed [`Dag`].

use super::cycles::check_cycles;
use super::graph::Dag;
use super::limits::Limits;
use super::spec::RunSpec;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::fmt;

/// The kind of a validation problem; stable, machine-readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProblemCode {
    EmptyRun,
    TooManyTasks,
    InvalidName,
    InvalidId,
    DuplicateId,
    InvalidHandler,
    InvalidQueue,
    UnknownDependency,
    SelfDependency,
    DuplicateDependency,
    TooManyDependencies,
    InputTooLarge,
    InputTooDeep,
    InvalidRetries,
    InvalidTimeout,
    InvalidBackoff,
    Cycle,
    UnknownAgent,
    InvalidAgent,
    /// An agent names a provider the operator did not declare.
    UnknownProvider,
    /// An agent sets what only the operator sets (`base_url`, `api_key_env`).
    OperatorSetting,
    InvalidBudget,
    InvalidLimit,
    /// A submitted task sets `parent`, which only the orchestrator sets (on spawned tasks).
    InvalidParent,
    /// The run would bring the distinct queue names in use past the server's cap.
    TooManyQueues,
    /// An approval task's input is not a valid approval setting.
    InvalidApproval,
    /// A template parameter is undeclared, missing, or malformed.
    InvalidParam,
}

impl fmt::Display for ProblemCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The serde name (`unknown_agent`) is the one the API and the CLI show.
        match serde_json::to_value(self) {
            Ok(Value::String(s)) => f.write_str(&s),
            _ => write!(f, "{self:?}"),
        }
    }
}

/// One thing wrong with a submission.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Problem {
    pub code: ProblemCode,
    pub message: String,
    /// The task ids involved, in a useful order (for a cycle: around the cycle). Left
    /// out when no task is involved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<String>,
}

/// Every problem found in a submission.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<Problem>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "{}", one.message),
            many => write!(f, "{} problems in the DAG", many.len()),
        }
    }
}

pub(super) fn problem(code: ProblemCode, message: String, tasks: Vec<String>) -> Problem {
    Problem {
        code,
        message,
        tasks,
    }
}

/// Whether `s` is a usable id: letters, digits and `_ - . :`, within the length limit.
pub(crate) fn is_valid_id(s: &str, max_len: usize) -> bool {
    !s.is_empty()
        && s.len() <= max_len
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

/// Counts bytes without keeping them, to size a JSON value without allocating it.
struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Bytes of `v` encoded as JSON, counted without building the text.
pub fn json_size(v: &Value) -> usize {
    let mut c = ByteCounter(0);
    // Writing a Value to a counter cannot fail.
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

fn json_depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(json_depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(json_depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Checks a spec against the limits and seals it into a [`Dag`], or names every problem.
pub fn validate(spec: RunSpec, limits: &Limits) -> Result<Dag, ValidationErrors> {
    let mut problems = Vec::new();
    check_run_fields(&spec, limits, &mut problems);
    let index = check_ids(&spec, limits, &mut problems);
    for task in &spec.tasks {
        check_task_fields(task, limits, &mut problems);
    }
    check_agents(&spec, limits, &mut problems);
    let edges = check_dependencies(&spec, &index, limits, &mut problems);
    // A cycle is only meaningful once every id and dependency resolves.
    if problems.is_empty() && check_cycles(spec.tasks.len(), &edges, &spec.tasks, &mut problems) {
        return Ok(Dag::seal(spec, index, &edges));
    }
    Err(ValidationErrors(problems))
}

fn check_run_fields(spec: &RunSpec, limits: &Limits, problems: &mut Vec<Problem>) {
    use ProblemCode::*;
    if spec.tasks.is_empty() {
        problems.push(problem(EmptyRun, "the run has no tasks".into(), vec![]));
    }
    if spec.tasks.len() > limits.max_tasks {
        problems.push(problem(
            TooManyTasks,
            format!(
                "the run has {} tasks; at most {} are allowed",
                spec.tasks.len(),
                limits.max_tasks
            ),
            vec![],
        ));
    }
    if spec.name.is_empty() || spec.name.len() > 256 {
        problems.push(problem(
            InvalidName,
            "the run name must be 1 to 256 characters".into(),
            vec![],
        ));
    }
    if !is_valid_id(&spec.queue, limits.max_id_len) {
        problems.push(problem(
            InvalidQueue,
            format!("queue {:?} is not a valid queue name (letters, digits, _ - . : only, at most {} characters)", spec.queue, limits.max_id_len),
            vec![],
        ));
    }
}

fn check_budget(
    budget: &super::spec::Budget,
    whose: &str,
    tasks: Vec<String>,
    problems: &mut Vec<Problem>,
) {
    if budget
        .max_cost_usd
        .is_some_and(|c| !(c.is_finite() && c >= 0.0))
    {
        problems.push(problem(
            ProblemCode::InvalidBudget,
            format!("{whose} has a max_cost_usd that is not a non-negative number"),
            tasks.clone(),
        ));
    }
    // Stored as a signed 64-bit integer; the document says so too.
    if budget.max_tokens.is_some_and(|t| i64::try_from(t).is_err()) {
        problems.push(problem(
            ProblemCode::InvalidBudget,
            format!("{whose} has a max_tokens above {}", i64::MAX),
            tasks,
        ));
    }
}

/// Checks an agent to be registered under `name`.
pub fn validate_agent(
    name: &str,
    agent: &super::spec::AgentSpec,
    limits: &Limits,
) -> Result<(), ValidationErrors> {
    let mut problems = Vec::new();
    check_agent(name, agent, limits, &mut problems);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors(problems))
    }
}

/// Validates a run as submitted by a user, who may not set what only the orchestrator
/// sets (`parent`, on spawned tasks).
pub fn validate_submission(spec: RunSpec, limits: &Limits) -> Result<Dag, ValidationErrors> {
    let reserved: Vec<Problem> = spec
        .tasks
        .iter()
        .filter(|t| t.parent.is_some())
        .map(|t| {
            problem(
                ProblemCode::InvalidParent,
                format!(
                    "task {:?} sets \"parent\"; only the orchestrator sets it, on tasks a handler spawns",
                    t.id
                ),
                vec![t.id.clone()],
            )
        })
        .collect();
    match validate(spec, limits) {
        Ok(dag) if reserved.is_empty() => Ok(dag),
        Ok(_) => Err(ValidationErrors(reserved)),
        Err(mut e) => {
            e.0.extend(reserved);
            Err(e)
        }
    }
}

fn check_agents(spec: &RunSpec, limits: &Limits, problems: &mut Vec<Problem>) {
    for (name, agent) in &spec.agents {
        check_agent(name, agent, limits, problems);
    }
    if let Some(b) = &spec.budget {
        check_budget(b, "the run", vec![], problems);
    }
    if spec.max_parallel == Some(0) {
        problems.push(problem(
            ProblemCode::InvalidLimit,
            "max_parallel is 0; no task could ever run".into(),
            vec![],
        ));
    }
    for (key, limit) in &spec.concurrency_limits {
        if !is_valid_id(key, limits.max_id_len) {
            problems.push(problem(
                ProblemCode::InvalidLimit,
                format!("concurrency key {key:?} is not valid: use letters, digits or _ - . :"),
                vec![],
            ));
        }
        let zero = [
            ("max_concurrency", limit.max_concurrency == Some(0)),
            ("rpm", limit.rpm == Some(0)),
            ("tpm", limit.tpm == Some(0)),
        ];
        if limit.tpm.is_some_and(|t| i64::try_from(t).is_err()) {
            problems.push(problem(
                ProblemCode::InvalidLimit,
                format!("concurrency key {key:?} sets a tpm above {}", i64::MAX),
                vec![],
            ));
        }
        for (what, is_zero) in zero {
            if is_zero {
                problems.push(problem(
                    ProblemCode::InvalidLimit,
                    format!("concurrency key {key:?} sets {what} 0; its tasks could never run"),
                    vec![],
                ));
            }
        }
    }

    for task in &spec.tasks {
        check_task_refs(task, &spec.agents, limits, problems);
    }
}

/// Checks what a task names beyond itself: its agent (defined in `agents`), its
/// concurrency key and its budget.
pub(super) fn check_task_refs(
    task: &super::spec::TaskSpec,
    agents: &std::collections::BTreeMap<String, super::spec::AgentSpec>,
    limits: &Limits,
    problems: &mut Vec<Problem>,
) {
    if let Some(agent) = &task.agent {
        if !agents.contains_key(agent) {
            problems.push(problem(
                ProblemCode::UnknownAgent,
                format!("task {:?} uses agent {agent:?}, which is neither defined in the run's \"agents\" nor registered", task.id),
                vec![task.id.clone()],
            ));
        }
    }
    if let Some(key) = &task.concurrency_key {
        if !is_valid_id(key, limits.max_id_len) {
            problems.push(problem(
                ProblemCode::InvalidLimit,
                format!("task {:?} has concurrency_key {key:?}, which is not valid: use letters, digits or _ - . :", task.id),
                vec![task.id.clone()],
            ));
        }
    }
    if let Some(b) = &task.budget {
        check_budget(
            b,
            &format!("task {:?}", task.id),
            vec![task.id.clone()],
            problems,
        );
    }
}

fn check_agent(
    name: &str,
    agent: &super::spec::AgentSpec,
    limits: &Limits,
    problems: &mut Vec<Problem>,
) {
    if !is_valid_id(name, limits.max_id_len) {
        problems.push(problem(
            ProblemCode::InvalidAgent,
            format!("agent name {name:?} is not valid: use letters, digits or _ - . :"),
            vec![],
        ));
    }
    if !limits.providers.contains(&agent.provider) {
        let declared: Vec<&str> = limits.providers.iter().map(String::as_str).collect();
        problems.push(problem(
            ProblemCode::UnknownProvider,
            format!(
                "agent {name:?} names provider {:?}, which the operator has not declared (declared: {})",
                agent.provider,
                declared.join(", ")
            ),
            vec![],
        ));
    }
    for (field, set) in [
        ("base_url", agent.base_url.is_some()),
        ("api_key_env", agent.api_key_env.is_some()),
    ] {
        if set {
            problems.push(problem(
                ProblemCode::OperatorSetting,
                format!(
                    "agent {name:?} sets {field}, which only the operator sets (in the providers file of the server and workers); name a declared provider instead"
                ),
                vec![],
            ));
        }
    }
    if agent.temperature.is_some_and(|t| !(0.0..=2.0).contains(&t)) {
        problems.push(problem(
            ProblemCode::InvalidAgent,
            format!("agent {name:?} has a temperature outside 0..2"),
            vec![],
        ));
    }
    if agent.max_concurrency == Some(0) {
        problems.push(problem(
            ProblemCode::InvalidAgent,
            format!("agent {name:?} has max_concurrency 0; it could never run"),
            vec![],
        ));
    }
    if agent.max_output_tokens == Some(0) {
        problems.push(problem(
            ProblemCode::InvalidAgent,
            format!("agent {name:?} has max_output_tokens 0; it could never answer"),
            vec![],
        ));
    }
    if agent.price.is_some_and(|p| {
        ![p.input_per_mtok, p.output_per_mtok]
            .iter()
            .all(|x| x.is_finite() && *x >= 0.0)
    }) {
        problems.push(problem(
            ProblemCode::InvalidAgent,
            format!(
                "agent {name:?} has a price that is not a non-negative number per million tokens"
            ),
            vec![],
        ));
    }
}

fn check_ids(spec: &RunSpec, limits: &Limits, problems: &mut Vec<Problem>) -> HashMap<String, u32> {
    let mut index = HashMap::with_capacity(spec.tasks.len());
    let mut reported = HashSet::new();
    for (i, task) in spec.tasks.iter().enumerate() {
        if !is_valid_id(&task.id, limits.max_id_len) {
            problems.push(problem(
                ProblemCode::InvalidId,
                format!(
                    "task id {:?} is not valid: use 1 to {} letters, digits or _ - . :",
                    task.id, limits.max_id_len
                ),
                vec![task.id.clone()],
            ));
        }
        if index.insert(task.id.clone(), i as u32).is_some() && reported.insert(task.id.clone()) {
            let count = spec.tasks.iter().filter(|t| t.id == task.id).count();
            problems.push(problem(
                ProblemCode::DuplicateId,
                format!("task id {:?} is used by {} tasks", task.id, count),
                vec![task.id.clone()],
            ));
        }
    }
    index
}

pub(super) fn check_task_fields(
    task: &super::spec::TaskSpec,
    limits: &Limits,
    problems: &mut Vec<Problem>,
) {
    use ProblemCode::*;
    super::work::count(1);
    let id = || vec![task.id.clone()];
    if super::approval::is_approval(task) {
        if let Err(why) = super::approval::parse(&task.input) {
            problems.push(problem(
                InvalidApproval,
                format!("task {:?}: {why}", task.id),
                id(),
            ));
        }
    }
    if !is_valid_id(&task.handler, limits.max_id_len) {
        problems.push(problem(
            InvalidHandler,
            format!(
                "task {:?} names handler {:?}, which is not a valid handler name",
                task.id, task.handler
            ),
            id(),
        ));
    }
    if let Some(q) = &task.queue {
        if !is_valid_id(q, limits.max_id_len) {
            problems.push(problem(
                InvalidQueue,
                format!(
                    "task {:?} names queue {:?}, which is not a valid queue name",
                    task.id, q
                ),
                id(),
            ));
        }
    }
    let size = json_size(&task.input);
    if size > limits.max_input_bytes {
        problems.push(problem(
            InputTooLarge,
            format!(
                "task {:?} has an input of {} bytes; at most {} are allowed",
                task.id, size, limits.max_input_bytes
            ),
            id(),
        ));
    }
    let depth = json_depth(&task.input);
    if depth > limits.max_json_depth {
        problems.push(problem(
            InputTooDeep,
            format!(
                "task {:?} has an input nested {} levels deep; at most {} are allowed",
                task.id, depth, limits.max_json_depth
            ),
            id(),
        ));
    }
    if task.retries > limits.max_retries {
        problems.push(problem(
            InvalidRetries,
            format!(
                "task {:?} asks for {} retries; at most {} are allowed",
                task.id, task.retries, limits.max_retries
            ),
            id(),
        ));
    }
    if let Some(t) = task.timeout_s {
        if !(t.is_finite() && t > 0.0) {
            problems.push(problem(
                InvalidTimeout,
                format!(
                    "task {:?} has timeout_s {}; it must be a positive number of seconds",
                    task.id, t
                ),
                id(),
            ));
        }
    }
    if let Some(t) = task.idle_timeout_s {
        if !(t.is_finite() && t > 0.0) {
            problems.push(problem(
                InvalidTimeout,
                format!(
                    "task {:?} has idle_timeout_s {}; it must be a positive number of seconds",
                    task.id, t
                ),
                id(),
            ));
        }
    }
    if let Some(b) = task.retry_backoff_s {
        if !(b.is_finite() && (0.0..=86_400.0).contains(&b)) {
            problems.push(problem(
                InvalidBackoff,
                format!(
                    "task {:?} has retry_backoff_s {}; it must be between 0 and 86400",
                    task.id, b
                ),
                id(),
            ));
        }
    }
}

fn check_dependencies(
    spec: &RunSpec,
    index: &HashMap<String, u32>,
    limits: &Limits,
    problems: &mut Vec<Problem>,
) -> Vec<(u32, u32)> {
    use ProblemCode::*;
    let mut edges = Vec::new();
    for (child, task) in spec.tasks.iter().enumerate() {
        if task.depends_on.len() > limits.max_dependencies {
            problems.push(problem(
                TooManyDependencies,
                format!(
                    "task {:?} has {} dependencies; at most {} are allowed",
                    task.id,
                    task.depends_on.len(),
                    limits.max_dependencies
                ),
                vec![task.id.clone()],
            ));
            continue;
        }
        let mut seen = HashSet::with_capacity(task.depends_on.len());
        for dep in &task.depends_on {
            if dep == &task.id {
                problems.push(problem(
                    SelfDependency,
                    format!("task {:?} depends on itself", task.id),
                    vec![task.id.clone()],
                ));
            } else if !seen.insert(dep.as_str()) {
                problems.push(problem(
                    DuplicateDependency,
                    format!(
                        "task {:?} lists dependency {:?} more than once",
                        task.id, dep
                    ),
                    vec![task.id.clone(), dep.clone()],
                ));
            } else if let Some(&parent) = index.get(dep) {
                edges.push((parent, child as u32));
            } else {
                problems.push(problem(
                    UnknownDependency,
                    format!(
                        "task {:?} depends on {:?}, which is not a task in this run",
                        task.id, dep
                    ),
                    vec![task.id.clone(), dep.clone()],
                ));
            }
        }
    }
    edges
}
