// Turns a run's tasks into the graph that is drawn. Big fan-outs are collapsed: siblings
// whose dependencies are identical become one group node. Dependencies are compared after
// their own collapsing, level by level, so a fan-out of chains (plan → a_i → b_i) folds
// into plan → [a ×N] → [b ×N] instead of leaving N b-nodes behind.
//
// Structure only: states are not an input, so this runs once per DAG, not once per event.

import type { TaskSpec } from '../live/runReducer';

export interface TaskNodeSpec {
  kind: 'task';
  id: string;
  taskId: string;
  handler: string;
}

export interface GroupNodeSpec {
  kind: 'group';
  id: string;
  label: string;
  handler: string;
  members: string[];
}

export type NodeSpec = TaskNodeSpec | GroupNodeSpec;

export interface EdgeSpec {
  id: string;
  source: string;
  target: string;
}

export interface GraphModel {
  nodes: NodeSpec[];
  edges: EdgeSpec[];
  /** Task id → id of the node that draws it (its own, or its group's). */
  nodeOf: Map<string, string>;
}

export interface GroupingOptions {
  collapse: boolean;
  /** Fewer siblings than this stay individual nodes. */
  minGroupSize: number;
}

/**
 * Sibling sets at least this large are collapsed by default: beyond about ten, a column
 * of nodes stops being readable at any zoom that also shows the rest of the DAG.
 */
export const DEFAULT_MIN_GROUP = 10;

export const taskNodeId = (taskId: string) => `task:${taskId}`;
export const groupNodeId = (firstMember: string) => `group:${firstMember}`;

/**
 * Depth of each task: 0 for roots, else 1 + the deepest dependency. Siblings with identical
 * dependencies therefore share a depth, which is what lets grouping go level by level.
 * Dependencies that name no task are ignored; tasks on a cycle (the server rejects those)
 * are put after everything else rather than lost.
 */
export function taskDepths(tasks: TaskSpec[]): Map<string, number> {
  const known = new Set(tasks.map((t) => t.id));
  const indegree = new Map<string, number>();
  const dependents = new Map<string, string[]>();
  for (const task of tasks) {
    const deps = new Set(task.depends_on.filter((d) => known.has(d)));
    indegree.set(task.id, deps.size);
    for (const dep of deps) {
      let list = dependents.get(dep);
      if (!list) dependents.set(dep, (list = []));
      list.push(task.id);
    }
  }
  const depth = new Map<string, number>();
  const queue: string[] = [];
  for (const task of tasks) if (indegree.get(task.id) === 0) queue.push(task.id);
  for (const id of queue) depth.set(id, 0);
  for (let head = 0; head < queue.length; head++) {
    const id = queue[head]!;
    const d = depth.get(id)!;
    for (const next of dependents.get(id) ?? []) {
      depth.set(next, Math.max(depth.get(next) ?? 0, d + 1));
      const left = indegree.get(next)! - 1;
      indegree.set(next, left);
      if (left === 0) queue.push(next);
    }
  }
  let maxDepth = 0;
  for (const d of depth.values()) maxDepth = Math.max(maxDepth, d);
  for (const task of tasks) if (!depth.has(task.id)) depth.set(task.id, maxDepth + 1);
  return depth;
}

function commonPrefix(ids: string[]): string {
  let prefix = ids[0] ?? '';
  for (const id of ids) {
    let i = 0;
    while (i < prefix.length && i < id.length && prefix[i] === id[i]) i++;
    prefix = prefix.slice(0, i);
    if (!prefix) break;
  }
  return prefix;
}

function groupLabel(members: string[]): string {
  const prefix = commonPrefix(members);
  return prefix ? `${prefix}*` : `${members[0]} …`;
}

export function buildGraph(tasks: TaskSpec[], options: GroupingOptions): GraphModel {
  const depth = taskDepths(tasks);
  const byId = new Map(tasks.map((t) => [t.id, t]));
  const levels: TaskSpec[][] = [];
  for (const task of tasks) {
    const d = depth.get(task.id)!;
    (levels[d] ??= []).push(task);
  }

  const nodeOf = new Map<string, string>();
  const nodes: NodeSpec[] = [];
  for (const level of levels) {
    if (!level) continue;
    const buckets = new Map<string, TaskSpec[]>();
    for (const task of level) {
      const key = options.collapse
        ? [...new Set(task.depends_on.filter((d) => byId.has(d)).map((d) => nodeOf.get(d)!))].sort().join('\n')
        : task.id;
      let bucket = buckets.get(key);
      if (!bucket) buckets.set(key, (bucket = []));
      bucket.push(task);
    }
    for (const bucket of buckets.values()) {
      if (options.collapse && bucket.length >= options.minGroupSize) {
        const members = bucket.map((t) => t.id);
        const handlers = new Set(bucket.map((t) => t.handler));
        const id = groupNodeId(members[0]!);
        nodes.push({
          kind: 'group',
          id,
          label: groupLabel(members),
          handler: handlers.size === 1 ? bucket[0]!.handler : 'mixed',
          members,
        });
        for (const member of members) nodeOf.set(member, id);
      } else {
        for (const task of bucket) {
          const id = taskNodeId(task.id);
          nodes.push({ kind: 'task', id, taskId: task.id, handler: task.handler });
          nodeOf.set(task.id, id);
        }
      }
    }
  }

  const edges: EdgeSpec[] = [];
  const seen = new Set<string>();
  for (const task of tasks) {
    const target = nodeOf.get(task.id)!;
    for (const dep of task.depends_on) {
      const source = nodeOf.get(dep);
      if (!source || source === target) continue;
      const id = `${source}->${target}`;
      if (seen.has(id)) continue;
      seen.add(id);
      edges.push({ id, source, target });
    }
  }
  return { nodes, edges, nodeOf };
}
