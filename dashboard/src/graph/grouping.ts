// Turns a run's tasks into the graph that is drawn. Big fan-outs are collapsed: siblings
// whose dependencies are identical become one group node. Dependencies are compared after
// their own collapsing, level by level, so a fan-out of chains (plan → a_i → b_i) folds
// into plan → [a ×N] → [b ×N] instead of leaving N b-nodes behind.
//
// Spawned tasks (dynamic fan-out: `parent` set) are grouped by who spawned them instead:
// all of a parent's children, and their own descendants, become one group node after the
// parent's node, whatever their size and inner dependencies, so the graph reads
// parent → [children] → the parent's dependents. A parent in `expanded` has its children
// drawn like any other tasks (fan-out grouping still applies to them).
//
// Structure only: states are not an input, so this runs once per DAG, not once per event.

import type { TaskSpec } from '../live/runReducer';

export interface TaskNodeSpec {
  kind: 'task';
  id: string;
  taskId: string;
  handler: string;
  agent: string | null;
}

export interface GroupNodeSpec {
  kind: 'group';
  id: string;
  label: string;
  handler: string;
  members: string[];
  /** Whether any member runs an agent: such groups have room for a usage line. */
  agents: boolean;
  /** For a group of spawned tasks: the node that spawned them (its id is the expand key) and its label. */
  spawnedBy?: { node: string; label: string };
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
  /** Fewer siblings than this stay individual nodes (spawned groups have no minimum). */
  minGroupSize: number;
  /** Node ids of parents whose spawned children are drawn one by one. */
  expanded?: ReadonlySet<string>;
}

/**
 * Sibling sets at least this large are collapsed by default: beyond about ten, a column
 * of nodes stops being readable at any zoom that also shows the rest of the DAG.
 */
export const DEFAULT_MIN_GROUP = 10;

export const taskNodeId = (taskId: string) => `task:${taskId}`;
export const groupNodeId = (firstMember: string) => `group:${firstMember}`;
export const spawnedGroupId = (parentNode: string) => `spawned:${parentNode}`;
export const isSpawnedGroupId = (nodeId: string) => nodeId.startsWith('spawned:');

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

function nodeLabel(node: NodeSpec): string {
  return node.kind === 'task' ? node.taskId : node.label;
}

/** How a group's handlers read: the one they share, or `mixed`. */
function groupHandler(members: TaskSpec[]): string {
  const handlers = new Set(members.map((t) => t.handler));
  return handlers.size === 1 ? members[0]!.handler : 'mixed';
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
  const nodeById = new Map<string, NodeSpec>();
  const spawnedMembers = new Map<string, TaskSpec[]>();
  const add = (node: NodeSpec) => {
    nodes.push(node);
    nodeById.set(node.id, node);
  };

  /**
   * The spawned group a task joins, or null to draw it by the ordinary rules: a task
   * whose parent is drawn inside a spawned group joins that group; one whose parent is
   * drawn on its own joins its parent's group, unless the parent is expanded.
   */
  const spawnedGroupOf = (task: TaskSpec): string | null => {
    if (!options.collapse || !task.parent) return null;
    const parentNode = nodeOf.get(task.parent);
    // A parent not placed yet is not upstream of its child (it depends on other tasks
    // only): nothing to hang the group from, so the child is drawn by the ordinary rules.
    if (!parentNode) return null;
    const parent = nodeById.get(parentNode)!;
    if (parent.kind === 'group' && parent.spawnedBy) return parentNode;
    if (options.expanded?.has(parentNode)) return null;
    const id = spawnedGroupId(parentNode);
    if (!nodeById.has(id)) {
      const parentLabel = nodeLabel(parent);
      add({
        kind: 'group',
        id,
        label: `spawned by ${parentLabel}`,
        handler: task.handler,
        members: [],
        agents: false,
        spawnedBy: { node: parentNode, label: parentLabel },
      });
      spawnedMembers.set(id, []);
    }
    return id;
  };

  for (const level of levels) {
    if (!level) continue;
    const buckets = new Map<string, TaskSpec[]>();
    for (const task of level) {
      const spawned = spawnedGroupOf(task);
      if (spawned) {
        const group = nodeById.get(spawned) as GroupNodeSpec;
        group.members.push(task.id);
        group.agents ||= !!task.agent;
        spawnedMembers.get(spawned)!.push(task);
        nodeOf.set(task.id, spawned);
        continue;
      }
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
        const id = groupNodeId(members[0]!);
        add({
          kind: 'group',
          id,
          label: groupLabel(members),
          handler: groupHandler(bucket),
          members,
          agents: bucket.some((t) => !!t.agent),
        });
        for (const member of members) nodeOf.set(member, id);
      } else {
        for (const task of bucket) {
          const id = taskNodeId(task.id);
          add({ kind: 'task', id, taskId: task.id, handler: task.handler, agent: task.agent ?? null });
          nodeOf.set(task.id, id);
        }
      }
    }
  }
  for (const [id, members] of spawnedMembers) (nodeById.get(id) as GroupNodeSpec).handler = groupHandler(members);

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
  return { nodes, edges: withoutSpawnShortcuts(edges, nodes), nodeOf };
}

/**
 * A parent's dependents also wait on all its children, so they depend on both the
 * parent and its spawned group; the direct parent → dependent edge says nothing the
 * path through the group does not, and would draw the flow around the children.
 */
function withoutSpawnShortcuts(edges: EdgeSpec[], nodes: NodeSpec[]): EdgeSpec[] {
  const groupOfParent = new Map<string, string>();
  for (const node of nodes) if (node.kind === 'group' && node.spawnedBy) groupOfParent.set(node.spawnedBy.node, node.id);
  if (groupOfParent.size === 0) return edges;
  const ids = new Set(edges.map((e) => e.id));
  return edges.filter((edge) => {
    const group = groupOfParent.get(edge.source);
    return !group || group === edge.target || !ids.has(`${group}->${edge.target}`);
  });
}
