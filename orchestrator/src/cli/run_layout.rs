//! How `apex run show` lays out a run's tasks: by DAG depth, with the tasks a handler
//! spawned nested under the task that spawned them.

use super::shapes::Task;
use std::collections::HashMap;

/// Each task's depth in the DAG: 0 without dependencies, else one more than its deepest
/// dependency. Unknown dependencies are ignored.
pub fn depths(tasks: &[Task]) -> Vec<usize> {
    let index = id_index(tasks);
    let deps: Vec<Vec<usize>> = tasks
        .iter()
        .map(|t| {
            t.depends_on
                .iter()
                .filter_map(|d| index.get(d.as_str()).copied())
                .collect()
        })
        .collect();
    depths_of(&deps)
}

pub(super) fn id_index(tasks: &[Task]) -> HashMap<&str, usize> {
    tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i))
        .collect()
}

/// Depths over dependency lists given by position. A cycle (which the server never
/// accepts) cannot loop: a node is given a depth before its dependencies are followed.
fn depths_of(deps: &[Vec<usize>]) -> Vec<usize> {
    let mut depth: Vec<Option<usize>> = vec![None; deps.len()];
    for start in 0..deps.len() {
        // Iterative depth-first walk: a deep chain must not overflow the stack.
        let mut stack = vec![(start, false)];
        while let Some((i, expanded)) = stack.pop() {
            if depth[i].is_some() {
                continue;
            }
            if expanded {
                let d = deps[i].iter().map(|&j| depth[j].map_or(0, |d| d + 1)).max();
                depth[i] = Some(d.unwrap_or(0));
            } else {
                stack.push((i, true));
                stack.extend(
                    deps[i]
                        .iter()
                        .filter(|&&j| depth[j].is_none())
                        .map(|&j| (j, false)),
                );
            }
        }
    }
    depth.into_iter().map(|d| d.unwrap_or(0)).collect()
}

/// Who spawned whom: each task's spawning parent (when it is in the run) and the top-level
/// task (one nobody spawned) it descends from.
pub(super) struct Lineage {
    parent: Vec<Option<usize>>,
    root: Vec<usize>,
    /// Spawned tasks by parent, in submission order.
    children: Vec<Vec<usize>>,
}

/// Deeper spawn chains than this are taken for a loop in the data and cut: the server
/// allows far fewer generations.
const MAX_SPAWN_CHAIN: usize = 64;

impl Lineage {
    pub(super) fn of(tasks: &[Task]) -> Self {
        let index = id_index(tasks);
        let mut parent: Vec<Option<usize>> = tasks
            .iter()
            .map(|t| t.parent.as_deref().and_then(|p| index.get(p).copied()))
            .collect();
        let mut root: Vec<usize> = (0..tasks.len()).collect();
        for i in 0..tasks.len() {
            let mut at = i;
            let mut steps = 0;
            while let Some(p) = parent[at] {
                at = p;
                steps += 1;
                if steps > MAX_SPAWN_CHAIN {
                    break;
                }
            }
            if steps > MAX_SPAWN_CHAIN {
                // A loop of parents: show the task at the top level rather than nowhere.
                parent[i] = None;
            } else {
                root[i] = at;
            }
        }
        let mut children = vec![Vec::new(); tasks.len()];
        for (i, p) in parent.iter().enumerate() {
            if let Some(p) = *p {
                children[p].push(i);
            }
        }
        Self {
            parent,
            root,
            children,
        }
    }

    /// The task that spawned `i`, the one that spawned that one, and so on.
    pub(super) fn ancestors(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        std::iter::successors(self.parent[i], |&p| self.parent[p]).take(MAX_SPAWN_CHAIN)
    }
}

/// One row of `run show`'s task table.
#[derive(Debug, PartialEq)]
pub enum Row {
    /// The task at this position, its name drawn after `prefix`.
    Task { index: usize, prefix: String },
    /// Spawned tasks left out (with their own descendants), counted on one line.
    More { prefix: String, hidden: Vec<usize> },
}

/// A parent with more spawned tasks than this lists only the first few and a count.
pub const CHILDREN_LISTED: usize = 10;
/// How many are listed when there are too many to list.
pub const CHILDREN_SHOWN_WHEN_MANY: usize = 3;

/// The rows of `run show`: top-level tasks by depth (a dependency on a spawned task counts
/// as one on the task that spawned it, so the submitted DAG keeps its shape), indented as
/// a tree; each followed by the tasks it spawned, indented under it, or a count of them
/// when there are many (unless `all`).
pub fn task_rows(tasks: &[Task], all: bool) -> Vec<Row> {
    let lineage = Lineage::of(tasks);
    let index = id_index(tasks);
    let deps: Vec<Vec<usize>> = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            t.depends_on
                .iter()
                .filter_map(|d| index.get(d.as_str()).map(|&j| lineage.root[j]))
                .filter(|&j| j != lineage.root[i])
                .collect()
        })
        .collect();
    let depth = depths_of(&deps);
    let mut top: Vec<usize> = (0..tasks.len())
        .filter(|&i| lineage.parent[i].is_none())
        .collect();
    top.sort_by_key(|&i| (depth[i], i));

    let mut rows = Vec::with_capacity(tasks.len());
    for i in top {
        let prefix = match depth[i] {
            0 => String::new(),
            d => format!("{}└ ", "  ".repeat(d - 1)),
        };
        let column = prefix.chars().count();
        rows.push(Row::Task { index: i, prefix });
        spawned_rows(&lineage, i, column + 2, all, &mut rows);
    }
    rows
}

/// Rows for the tasks `parent` spawned, their arrows at `column`.
fn spawned_rows(lineage: &Lineage, parent: usize, column: usize, all: bool, rows: &mut Vec<Row>) {
    // Iterative: each entry is (parent, its children's column, how many are listed).
    let mut stack: Vec<(usize, usize, usize)> = vec![(parent, column, 0)];
    while let Some((p, col, next)) = stack.pop() {
        let children = &lineage.children[p];
        let shown = if all || children.len() <= CHILDREN_LISTED {
            children.len()
        } else {
            CHILDREN_SHOWN_WHEN_MANY
        };
        let prefix = format!("{}↳ ", " ".repeat(col));
        if next < shown {
            let child = children[next];
            stack.push((p, col, next + 1));
            rows.push(Row::Task {
                index: child,
                prefix,
            });
            stack.push((child, col + 2, 0));
        } else if shown < children.len() {
            let mut hidden = Vec::new();
            let mut pending: Vec<usize> = children[shown..].to_vec();
            while let Some(h) = pending.pop() {
                hidden.push(h);
                pending.extend(&lineage.children[h]);
            }
            hidden.sort_unstable();
            rows.push(Row::More { prefix, hidden });
        }
    }
}

/// The tasks' positions ordered by depth, then by submission order.
pub(super) fn by_depth(depth: &[usize]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..depth.len()).collect();
    order.sort_by_key(|&i| (depth[i], i));
    order
}
