//! Dynamic fan-out: a handler's result may carry new tasks, which join the run under
//! the task that spawned them. The grown graph is validated like a submission (ids,
//! cycles, limits), so a bad child spec fails its parent with a clear reason.

use super::graph::Dag;
use super::limits::Limits;
use super::spec::TaskSpec;
use super::validate::{validate, Problem, ProblemCode, ValidationErrors};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Arc;

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

/// The graph grown by `children` of task `parent`. Child ids are namespaced as
/// `PARENT.ID`; children with no dependencies depend on the parent (and so receive its
/// output); every task that depended on the parent now also depends on every child.
/// Returns the new graph and the indices of the children in it.
pub fn grow(
    dag: &Dag,
    parent: u32,
    children: &[Value],
    limits: &Limits,
) -> Result<(Dag, Vec<u32>), ValidationErrors> {
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

    let child_ids: Vec<String> = specs.iter().map(|s| s.id.clone()).collect();
    let mut run = dag.to_spec();
    for &d in dag.children(parent) {
        run.tasks[d as usize]
            .depends_on
            .extend(child_ids.iter().cloned());
    }
    let first = run.tasks.len() as u32;
    run.tasks.extend(specs);
    // The run's agents passed the operator's provider check when it was submitted;
    // the default limits here know only the built-in providers, so accept the run's.
    let mut limits = limits.clone();
    let mut providers = (*limits.providers).clone();
    providers.extend(dag.options.agents.values().map(|a| a.provider.clone()));
    limits.providers = Arc::new(providers);
    let mut grown = validate(run, &limits).map_err(|mut e| {
        for p in &mut e.0 {
            p.message = format!("children of task {parent_id:?}: {}", p.message);
        }
        e
    })?;
    // What the orchestrator set on the run (its re-run link) is no part of a spec.
    grown.options = Arc::clone(&dag.options);
    Ok((grown, (first..first + children.len() as u32).collect()))
}
