//! The sealed DAG: a validated spec with compact adjacency lists. Built only by
//! [`super::validate`], so holding a `Dag` proves the graph is acyclic and every
//! dependency resolves. The engine walks it on every task completion, so children and
//! parents are flat slices (compressed rows), not hash lookups.

use super::spec::{RunOptions, RunSpec, TaskSpec};
use std::collections::HashMap;
use std::sync::Arc;

/// Adjacency lists stored as one flat array with offsets.
#[derive(Debug, Clone, Default)]
struct Csr {
    offsets: Vec<u32>,
    targets: Vec<u32>,
}

impl Csr {
    fn build(n: usize, pairs: impl Iterator<Item = (u32, u32)> + Clone) -> Self {
        let mut offsets = vec![0u32; n + 1];
        for (from, _) in pairs.clone() {
            offsets[from as usize + 1] += 1;
        }
        for i in 0..n {
            offsets[i + 1] += offsets[i];
        }
        let mut fill = offsets.clone();
        let mut targets = vec![0u32; offsets[n] as usize];
        for (from, to) in pairs {
            targets[fill[from as usize] as usize] = to;
            fill[from as usize] += 1;
        }
        Self { offsets, targets }
    }

    fn of(&self, i: u32) -> &[u32] {
        let i = i as usize;
        &self.targets[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }
}

/// A validated, acyclic run graph. Tasks are addressed by their index in submission order.
#[derive(Debug, Clone)]
pub struct Dag {
    pub name: String,
    pub queue: String,
    /// Agents (resolved at submission: a snapshot, so later changes to registered
    /// agents do not reach a running run), budget and limits.
    pub options: Arc<RunOptions>,
    tasks: Vec<TaskSpec>,
    index: HashMap<String, u32>,
    parents: Csr,
    children: Csr,
    /// Longest path from a root: 0 for tasks with no dependencies.
    depth: Vec<u32>,
}

impl Dag {
    pub(super) fn seal(
        spec: RunSpec,
        index: HashMap<String, u32>,
        edges: &[(u32, u32)],
        topo: &[u32],
    ) -> Self {
        let n = spec.tasks.len();
        // Parents keep the order the user listed them in `depends_on`.
        let parents = Csr::build(n, edges.iter().map(|&(p, c)| (c, p)));
        let children = Csr::build(n, edges.iter().copied());
        let mut depth = vec![0u32; n];
        for &t in topo {
            for &c in children.of(t) {
                depth[c as usize] = depth[c as usize].max(depth[t as usize] + 1);
            }
        }
        Self {
            name: spec.name,
            queue: spec.queue,
            options: Arc::new(RunOptions {
                agents: spec.agents,
                budget: spec.budget,
                max_parallel: spec.max_parallel,
                concurrency_limits: spec.concurrency_limits,
            }),
            tasks: spec.tasks,
            index,
            parents,
            children,
            depth,
        }
    }

    /// Number of tasks.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// True when the run has no tasks (never, for a validated run).
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// The spec of task `i`.
    pub fn task(&self, i: u32) -> &TaskSpec {
        &self.tasks[i as usize]
    }

    /// Every task spec in submission order.
    pub fn tasks(&self) -> &[TaskSpec] {
        &self.tasks
    }

    /// The index of the task with id `id`.
    pub fn index_of(&self, id: &str) -> Option<u32> {
        self.index.get(id).copied()
    }

    /// Tasks that `i` depends on.
    pub fn parents(&self, i: u32) -> &[u32] {
        self.parents.of(i)
    }

    /// Tasks that depend on `i`.
    pub fn children(&self, i: u32) -> &[u32] {
        self.children.of(i)
    }

    /// Longest dependency path from a root to task `i`.
    pub fn depth(&self, i: u32) -> u32 {
        self.depth[i as usize]
    }

    /// The queue task `i` goes to.
    pub fn queue_of(&self, i: u32) -> &str {
        self.tasks[i as usize].queue_or(&self.queue)
    }

    /// Replaces the run's budget (a person raised it).
    pub fn set_run_budget(&mut self, budget: super::spec::Budget) {
        Arc::make_mut(&mut self.options).budget = Some(budget);
    }

    /// Replaces task `i`'s own budget (a person raised it).
    pub fn set_task_budget(&mut self, i: u32, budget: super::spec::Budget) {
        self.tasks[i as usize].budget = Some(budget);
    }

    /// Back to the spec it was sealed from.
    pub fn to_spec(&self) -> RunSpec {
        RunSpec::from_parts(
            self.name.clone(),
            self.queue.clone(),
            self.tasks.clone(),
            RunOptions::clone(&self.options),
        )
    }
}
