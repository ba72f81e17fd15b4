//! Cycle detection for validation: a topological sort, and on failure every cycle named
//! around its members.

use super::spec::TaskSpec;
use super::validate::{problem, Problem, ProblemCode};
use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use std::collections::{HashMap, HashSet, VecDeque};

/// True if the graph of `n` nodes is acyclic; otherwise reports every cycle (one per
/// strongly connected component), naming its tasks from `tasks`.
pub(super) fn check_cycles(
    n: usize,
    edges: &[(u32, u32)],
    tasks: &[TaskSpec],
    problems: &mut Vec<Problem>,
) -> bool {
    let mut g: DiGraph<(), ()> = DiGraph::with_capacity(n, edges.len());
    for _ in 0..n {
        g.add_node(());
    }
    for &(p, c) in edges {
        g.add_edge(NodeIndex::new(p as usize), NodeIndex::new(c as usize), ());
    }
    match petgraph::algo::toposort(&g, None) {
        Ok(_) => true,
        Err(_) => {
            let mut sccs: Vec<Vec<NodeIndex>> =
                tarjan_scc(&g).into_iter().filter(|c| c.len() > 1).collect();
            sccs.sort_by_key(|c| c.iter().map(|n| n.index()).min());
            for scc in sccs {
                let path = cycle_through(&g, &scc);
                let names: Vec<String> = path.iter().map(|n| tasks[n.index()].id.clone()).collect();
                let mut shown = names.join(" -> ");
                shown.push_str(" -> ");
                shown.push_str(&names[0]);
                problems.push(problem(
                    ProblemCode::Cycle,
                    format!("cycle: {shown} (remove one of these dependencies)"),
                    names,
                ));
            }
            false
        }
    }
}

/// A shortest cycle through the smallest-index member of a strongly connected component.
fn cycle_through(g: &DiGraph<(), ()>, scc: &[NodeIndex]) -> Vec<NodeIndex> {
    let members: HashSet<NodeIndex> = scc.iter().copied().collect();
    let start = *scc.iter().min().expect("non-empty component");
    let mut prev: HashMap<NodeIndex, NodeIndex> = HashMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(n) = queue.pop_front() {
        for m in g.neighbors(n) {
            if !members.contains(&m) || prev.contains_key(&m) {
                continue;
            }
            prev.insert(m, n);
            if m == start {
                let mut path = vec![];
                let mut cur = n;
                while cur != start {
                    path.push(cur);
                    cur = prev[&cur];
                }
                path.push(start);
                path.reverse();
                return path;
            }
            queue.push_back(m);
        }
    }
    scc.to_vec()
}
