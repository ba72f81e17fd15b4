//! The sealed DAG: a validated spec with compact adjacency lists. Built only by
//! [`super::validate`], so holding a `Dag` proves the graph is acyclic and every
//! dependency resolves. The engine walks it on every task completion, so children and
//! parents are flat slices (compressed rows), not hash lookups.

use super::spec::{RunOptions, RunSpec, TaskSpec};
use std::collections::HashMap;
use std::sync::Arc;

/// Adjacency lists in one flat array, each row a span of it with room to grow. A row
/// that outgrows its room moves to the end of the array with twice the room (its old
/// place becomes garbage, reclaimed once garbage outweighs the rest), so adding a task
/// or an edge costs amortised O(1) per entry, whatever the size of the graph.
#[derive(Debug, Clone, Default)]
struct Rows {
    /// `(start, len, room)` of each row in `targets`.
    spans: Vec<(u32, u32, u32)>,
    targets: Vec<u32>,
    garbage: usize,
}

impl Rows {
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
        let spans = (0..n)
            .map(|i| {
                let len = offsets[i + 1] - offsets[i];
                (offsets[i], len, len)
            })
            .collect();
        Self {
            spans,
            targets,
            garbage: 0,
        }
    }

    fn of(&self, i: u32) -> &[u32] {
        let (start, len, _) = self.spans[i as usize];
        &self.targets[start as usize..(start + len) as usize]
    }

    /// Adds a row for a new node.
    fn push_row(&mut self, row: &[u32]) {
        let (start, len) = (self.targets.len() as u32, row.len() as u32);
        self.spans.push((start, len, len));
        self.targets.extend_from_slice(row);
        super::work::count(row.len() + 1);
    }

    /// Appends `extra` to row `i`.
    fn extend_row(&mut self, i: u32, extra: &[u32]) {
        let (start, len, room) = self.spans[i as usize];
        let (s, l, need) = (start as usize, len as usize, len as usize + extra.len());
        if need > room as usize {
            let at = self.targets.len();
            let new_room = (2 * need).max(4);
            self.targets.extend_from_within(s..s + l);
            self.targets.resize(at + new_room, 0);
            self.garbage += room as usize;
            let room = new_room;
            self.spans[i as usize] = (at as u32, len, room as u32);
            super::work::count(l);
        }
        let start = self.spans[i as usize].0 as usize;
        self.targets[start + l..start + need].copy_from_slice(extra);
        self.spans[i as usize].1 = need as u32;
        super::work::count(extra.len());
        // Compaction walks every row and live entry: the garbage pays for it.
        if self.garbage > (self.targets.len() / 2).max(self.spans.len()) {
            self.compact();
        }
    }

    /// Drops the garbage and spare room.
    fn compact(&mut self) {
        let live: usize = self.spans.iter().map(|s| s.1 as usize).sum();
        let mut targets = Vec::with_capacity(live);
        for span in &mut self.spans {
            let (start, len, _) = *span;
            *span = (targets.len() as u32, len, len);
            targets.extend_from_slice(&self.targets[start as usize..(start + len) as usize]);
        }
        super::work::count(self.spans.len() + targets.len());
        self.targets = targets;
        self.garbage = 0;
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
    parents: Rows,
    children: Rows,
    /// Some task names a queue other than the run's: counting tasks per queue then
    /// needs a look at each task, not only the run's counters.
    mixed_queues: bool,
}

impl Dag {
    pub(super) fn seal(spec: RunSpec, index: HashMap<String, u32>, edges: &[(u32, u32)]) -> Self {
        let n = spec.tasks.len();
        // Parents keep the order the user listed them in `depends_on`.
        let parents = Rows::build(n, edges.iter().map(|&(p, c)| (c, p)));
        let children = Rows::build(n, edges.iter().copied());
        let mixed_queues = spec
            .tasks
            .iter()
            .any(|t| t.queue_or(&spec.queue) != spec.queue);
        // Held for the run's life: without the room a growing parse left (up to half
        // again as much: ~10 MB for 100,000 tasks).
        let mut tasks = spec.tasks;
        tasks.shrink_to_fit();
        Self {
            name: spec.name,
            queue: spec.queue,
            options: Arc::new(RunOptions {
                agents: spec.agents,
                budget: spec.budget,
                max_parallel: spec.max_parallel,
                concurrency_limits: spec.concurrency_limits,
                ttl_s: spec.ttl_s,
                origin: None,
                rerun_of: None,
            }),
            tasks,
            index,
            parents,
            children,
            mixed_queues,
        }
    }

    /// True when some task goes to a queue other than the run's.
    pub fn mixed_queues(&self) -> bool {
        self.mixed_queues
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

    /// The queue task `i` goes to.
    pub fn queue_of(&self, i: u32) -> &str {
        self.tasks[i as usize].queue_or(&self.queue)
    }

    /// Adds tasks checked by [`super::grow`]: `tasks[j]` gets index `len() + j` and the
    /// parents `parents[j]`; then each of `joined` (an existing task) also depends on
    /// every added task. Costs the size of what is added, not of the graph.
    pub(super) fn append(&mut self, tasks: Vec<TaskSpec>, parents: &[Vec<u32>], joined: &[u32]) {
        let first = self.tasks.len() as u32;
        let added: Vec<u32> = (first..first + tasks.len() as u32).collect();
        // Children of each added task: the joined tasks (lower indices), then later
        // siblings, as a fresh validation would order them.
        let mut below: Vec<Vec<u32>> = vec![joined.to_vec(); tasks.len()];
        let mut above: std::collections::BTreeMap<u32, Vec<u32>> = Default::default();
        for (j, ps) in parents.iter().enumerate() {
            for &p in ps {
                if p >= first {
                    below[(p - first) as usize].push(first + j as u32);
                } else {
                    above.entry(p).or_default().push(first + j as u32);
                }
            }
        }
        for (p, cs) in above {
            self.children.extend_row(p, &cs);
        }
        for (j, task) in tasks.into_iter().enumerate() {
            self.mixed_queues |= task.queue_or(&self.queue) != self.queue;
            self.index.insert(task.id.clone(), first + j as u32);
            self.tasks.push(task);
            self.parents.push_row(&parents[j]);
            self.children.push_row(&below[j]);
        }
        let ids: Vec<String> = added
            .iter()
            .map(|&a| self.tasks[a as usize].id.clone())
            .collect();
        for &d in joined {
            self.tasks[d as usize]
                .depends_on
                .extend(ids.iter().cloned());
            self.parents.extend_row(d, &added);
        }
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
