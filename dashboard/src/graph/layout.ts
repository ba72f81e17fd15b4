// Layered left-to-right layout of a GraphModel. Dagre gives the nicer picture (crossing
// reduction, edge routing) but grows superlinearly; past DAGRE_MAX_NODES (a big run the
// user chose to expand) a linear longest-path layering with one barycentre sweep keeps the
// page responsive instead.

import dagre from '@dagrejs/dagre';
import type { GraphModel, NodeSpec } from './grouping';

export interface Size {
  width: number;
  height: number;
}

/** Top-left corner, as xyflow positions nodes. */
export interface Point {
  x: number;
  y: number;
}

export const TASK_SIZE: Size = { width: 190, height: 52 };
export const GROUP_SIZE: Size = { width: 220, height: 78 };
/** Agent nodes have one more line, for usage; the size depends on the spec only, so usage arriving moves nothing. */
export const AGENT_TASK_SIZE: Size = { width: 190, height: 68 };
export const AGENT_GROUP_SIZE: Size = { width: 220, height: 94 };
export const DAGRE_MAX_NODES = 600;

const RANK_GAP = 70;
const NODE_GAP = 24;

export function nodeSize(node: NodeSpec): Size {
  if (node.kind === 'group') return node.agents ? AGENT_GROUP_SIZE : GROUP_SIZE;
  return node.agent ? AGENT_TASK_SIZE : TASK_SIZE;
}

export function layoutGraph(model: GraphModel): Map<string, Point> {
  return model.nodes.length <= DAGRE_MAX_NODES ? dagreLayout(model) : layeredLayout(model);
}

export function dagreLayout(model: GraphModel): Map<string, Point> {
  const g = new dagre.graphlib.Graph();
  g.setGraph({ rankdir: 'LR', ranksep: RANK_GAP, nodesep: NODE_GAP, marginx: 10, marginy: 10 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const node of model.nodes) g.setNode(node.id, { ...nodeSize(node) });
  for (const edge of model.edges) g.setEdge(edge.source, edge.target);
  dagre.layout(g);
  const positions = new Map<string, Point>();
  for (const node of model.nodes) {
    const placed = g.node(node.id);
    const size = nodeSize(node);
    // Dagre gives centres; xyflow wants corners.
    positions.set(node.id, { x: placed.x - size.width / 2, y: placed.y - size.height / 2 });
  }
  return positions;
}

export function layeredLayout(model: GraphModel): Map<string, Point> {
  const preds = new Map<string, string[]>();
  const succs = new Map<string, string[]>();
  for (const node of model.nodes) {
    preds.set(node.id, []);
    succs.set(node.id, []);
  }
  for (const edge of model.edges) {
    preds.get(edge.target)?.push(edge.source);
    succs.get(edge.source)?.push(edge.target);
  }

  // Longest-path ranks by Kahn's algorithm; anything left on a cycle goes last.
  const indegree = new Map<string, number>();
  for (const node of model.nodes) indegree.set(node.id, preds.get(node.id)!.length);
  const rank = new Map<string, number>();
  const order: string[] = model.nodes.filter((n) => indegree.get(n.id) === 0).map((n) => n.id);
  for (const id of order) rank.set(id, 0);
  for (let head = 0; head < order.length; head++) {
    const id = order[head]!;
    for (const next of succs.get(id)!) {
      rank.set(next, Math.max(rank.get(next) ?? 0, rank.get(id)! + 1));
      const left = indegree.get(next)! - 1;
      indegree.set(next, left);
      if (left === 0) order.push(next);
    }
  }
  let maxRank = 0;
  for (const r of rank.values()) maxRank = Math.max(maxRank, r);
  for (const node of model.nodes) if (!rank.has(node.id)) rank.set(node.id, maxRank + 1);

  const columns: string[][] = [];
  for (const node of model.nodes) (columns[rank.get(node.id)!] ??= []).push(node.id);

  // One sweep: order each column by the mean row of its predecessors, which untangles
  // the common shapes (fan-out, fan-in, parallel chains) well enough.
  const row = new Map<string, number>();
  for (const column of columns) {
    if (!column) continue;
    const key = (id: string) => {
      const ps = preds.get(id)!;
      if (ps.length === 0) return row.size;
      let sum = 0;
      for (const p of ps) sum += row.get(p) ?? 0;
      return sum / ps.length;
    };
    const keyed = column.map((id, i) => ({ id, k: key(id), i }));
    keyed.sort((a, b) => a.k - b.k || a.i - b.i);
    keyed.forEach((entry, i) => row.set(entry.id, i));
  }

  const sizes = new Map(model.nodes.map((n) => [n.id, nodeSize(n)]));
  let widest = Math.max(TASK_SIZE.width, GROUP_SIZE.width);
  let highest = Math.max(TASK_SIZE.height, GROUP_SIZE.height);
  for (const size of sizes.values()) {
    widest = Math.max(widest, size.width);
    highest = Math.max(highest, size.height);
  }
  const columnWidth = widest + RANK_GAP;
  const rowHeight = highest + NODE_GAP;
  const tallest = columns.reduce((most, c) => Math.max(most, c?.length ?? 0), 0);
  const positions = new Map<string, Point>();
  columns.forEach((column, r) => {
    if (!column) return;
    // Centre each column against the tallest so a lone sink sits level with its fan-in.
    const offset = ((tallest - column.length) * rowHeight) / 2;
    for (const id of column) {
      const size = sizes.get(id)!;
      positions.set(id, { x: r * columnWidth, y: offset + row.get(id)! * rowHeight + (rowHeight - size.height) / 2 });
    }
  });
  return positions;
}
