//! Dynamic fan-out: a handler's result may carry new tasks, which join the run under
//! the task that spawned them. The children are validated like a submission's tasks
//! (ids, fields, cycles, limits), so a bad child spec fails its parent with a clear
//! reason; the rest of the graph is not checked again.

use super::cycles::check_cycles;
use super::graph::Dag;
use super::limits::Limits;
use super::spec::TaskSpec;
use super::validate::{
    check_task_fields, check_task_refs, is_valid_id, Problem, ProblemCode, ValidationErrors,
};
use serde_json::Value;
use std::collections::{HashMap, HashSet};

/// Most children one task may spawn.
pub const MAX_CHILDREN: usize = 1_000;
/// Most generations of spawning: a child's child's … child, this deep at most.
pub const MAX_SPAWN_DEPTH: usize = 8;

fn error(code: ProblemCode, message: String) -> ValidationErrors {
    ValidationErrors(vec![Problem {
        code,
        message,
        tasks: vec![],
    }])
}

/// How many ancestors spawned task `i`.
fn spawn_depth(dag: &Dag, mut i: u32) -> usize {
    let mut depth = 0;
    while let Some(parent) = dag.task(i).parent.as_deref().and_then(|p| dag.index_of(p)) {
        depth += 1;
        i = parent;
    }
    depth
}

/// Grows the graph by `children` of task `parent`. Child ids are namespaced as
/// `PARENT.ID`; children with no dependencies depend on the parent (and so receive its
/// output); every task that depended on the parent now also depends on every child.
/// Returns the indices of the children. Only the children and the edges they bring are
/// checked (as a submission's tasks would be): the rest of the graph was checked when it
/// joined, so a spawn costs the size of the spawn, not of the run. On an error the graph
/// is left as it was.
pub fn grow(
    dag: &mut Dag,
    parent: u32,
    children: &[Value],
    limits: &Limits,
) -> Result<Vec<u32>, ValidationErrors> {
    let parent_id = dag.task(parent).id.clone();
    if children.len() > MAX_CHILDREN {
        return Err(error(
            ProblemCode::TooManyTasks,
            format!(
                "task {parent_id:?} spawned {} children; at most {MAX_CHILDREN} are allowed",
                children.len()
            ),
        ));
    }
    if spawn_depth(dag, parent) + 1 > MAX_SPAWN_DEPTH {
        return Err(error(
            ProblemCode::TooManyTasks,
            format!("task {parent_id:?} is {MAX_SPAWN_DEPTH} spawns deep; its children would be one too many"),
        ));
    }
    let mut specs: Vec<TaskSpec> = Vec::with_capacity(children.len());
    for (n, child) in children.iter().enumerate() {
        let mut spec: TaskSpec = serde_json::from_value(child.clone()).map_err(|e| {
            error(
                ProblemCode::InvalidId,
                format!("child {n} of task {parent_id:?} is not a valid task spec: {e}"),
            )
        })?;
        if spec.parent.is_some() {
            return Err(error(
                ProblemCode::InvalidId,
                format!(
                    "child {n} of task {parent_id:?} sets \"parent\"; the orchestrator sets it"
                ),
            ));
        }
        spec.parent = Some(parent_id.clone());
        specs.push(spec);
    }
    let local: HashSet<String> = specs.iter().map(|s| s.id.clone()).collect();
    for spec in &mut specs {
        // Only siblings: a dependency on a task outside the spawn could already be
        // finished, and the graph only ever grows below the parent.
        if let Some(d) = spec.depends_on.iter().find(|d| !local.contains(*d)) {
            return Err(error(
                ProblemCode::UnknownDependency,
                format!(
                    "child {:?} of task {parent_id:?} depends on {d:?}, which is not one of the children it spawned with",
                    spec.id
                ),
            ));
        }
        let deps = std::mem::take(&mut spec.depends_on);
        spec.depends_on = if deps.is_empty() {
            vec![parent_id.clone()]
        } else {
            deps.into_iter()
                .map(|d| format!("{parent_id}.{d}"))
                .collect()
        };
        spec.id = format!("{parent_id}.{}", spec.id);
    }

    let first = dag.len() as u32;
    let mut problems = Vec::new();
    // The run's agents passed the operator's provider check when it was submitted; the
    // default limits here know only the built-in providers, so accept the run's too.
    let mut limits = limits.clone();
    let mut providers = (*limits.providers).clone();
    providers.extend(dag.options.agents.values().map(|a| a.provider.clone()));
    limits.providers = std::sync::Arc::new(providers);
    check_children(dag, parent, &specs, &limits, &mut problems);
    // Each child's index among the children (the first, if an id repeats: reported).
    let mut index: HashMap<&str, u32> = HashMap::with_capacity(specs.len());
    for (j, spec) in specs.iter().enumerate() {
        index.entry(spec.id.as_str()).or_insert(j as u32);
    }
    // Parents of each child, and the edges among the children for the cycle check.
    let mut parents: Vec<Vec<u32>> = Vec::with_capacity(specs.len());
    let mut edges: Vec<(u32, u32)> = Vec::new();
    for (j, spec) in specs.iter().enumerate() {
        let mut seen = HashSet::with_capacity(spec.depends_on.len());
        let mut ps = Vec::with_capacity(spec.depends_on.len());
        for d in &spec.depends_on {
            if d == &spec.id {
                problems.push(problem(
                    ProblemCode::SelfDependency,
                    format!("task {:?} depends on itself", spec.id),
                ));
            } else if !seen.insert(d.as_str()) {
                problems.push(problem(
                    ProblemCode::DuplicateDependency,
                    format!("task {:?} lists dependency {d:?} more than once", spec.id),
                ));
            } else if let Some(&s) = index.get(d.as_str()) {
                edges.push((s, j as u32));
                ps.push(first + s);
            } else {
                ps.push(parent);
            }
        }
        parents.push(ps);
    }
    if problems.is_empty() {
        check_cycles(specs.len(), &edges, &specs, &mut problems);
    }
    if !problems.is_empty() {
        for p in &mut problems {
            p.message = format!("children of task {parent_id:?}: {}", p.message);
        }
        return Err(ValidationErrors(problems));
    }
    let joined = dag.children(parent).to_vec();
    let count = specs.len() as u32;
    dag.append(specs, &parents, &joined);
    Ok((first..first + count).collect())
}

fn problem(code: ProblemCode, message: String) -> Problem {
    Problem {
        code,
        message,
        tasks: vec![],
    }
}

/// What a submission's checks would find in the children alone: their ids (namespaced
/// under the parent, unique in the run), fields and references, the run's task limit,
/// and the dependency limit of the tasks that will wait on them.
fn check_children(
    dag: &Dag,
    parent: u32,
    specs: &[TaskSpec],
    limits: &Limits,
    problems: &mut Vec<Problem>,
) {
    if dag.len() + specs.len() > limits.max_tasks {
        problems.push(problem(
            ProblemCode::TooManyTasks,
            format!(
                "the run would have {} tasks; at most {} are allowed",
                dag.len() + specs.len(),
                limits.max_tasks
            ),
        ));
    }
    let mut ids = HashSet::with_capacity(specs.len());
    for spec in specs {
        let id = &spec.id;
        if !is_valid_id(id, limits.max_id_len) {
            problems.push(problem(
                ProblemCode::InvalidId,
                format!(
                    "task id {id:?} is not valid: use 1 to {} letters, digits or _ - . :",
                    limits.max_id_len
                ),
            ));
        }
        if !ids.insert(id.as_str()) || dag.index_of(id).is_some() {
            problems.push(problem(
                ProblemCode::DuplicateId,
                format!("task id {id:?} is used by more than one task"),
            ));
        }
        check_task_fields(spec, limits, problems);
        check_task_refs(spec, &dag.options.agents, limits, problems);
        if spec.depends_on.len() > limits.max_dependencies {
            problems.push(problem(
                ProblemCode::TooManyDependencies,
                format!(
                    "task {:?} has {} dependencies; at most {} are allowed",
                    spec.id,
                    spec.depends_on.len(),
                    limits.max_dependencies
                ),
            ));
        }
    }
    for &d in dag.children(parent) {
        let task = dag.task(d);
        let n = task.depends_on.len() + specs.len();
        if n > limits.max_dependencies {
            problems.push(problem(
                ProblemCode::TooManyDependencies,
                format!(
                    "task {:?} would have {n} dependencies; at most {} are allowed",
                    task.id, limits.max_dependencies
                ),
            ));
        }
    }
}
