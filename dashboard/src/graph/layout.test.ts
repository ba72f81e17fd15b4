import { describe, expect, it } from 'vitest';
import { buildGraph, type GraphModel } from './grouping';
import { DAGRE_MAX_NODES, dagreLayout, layeredLayout, layoutGraph, nodeSize, type Point } from './layout';
import type { TaskSpec } from '../live/runReducer';

const spec = (id: string, depends_on: string[] = []): TaskSpec => ({ id, handler: 'echo', depends_on });
const diamond = () => buildGraph([spec('a'), spec('b', ['a']), spec('c', ['a']), spec('d', ['b', 'c'])], { collapse: true, minGroupSize: 8 });

function expectLayered(model: GraphModel, positions: Map<string, Point>) {
  expect(positions.size).toBe(model.nodes.length);
  for (const edge of model.edges) {
    const source = positions.get(edge.source)!;
    const target = positions.get(edge.target)!;
    expect(target.x).toBeGreaterThan(source.x);
  }
}

/** Nodes share a column per rank (same centre x); within one, neighbours must not touch. */
function expectNoOverlap(model: GraphModel, positions: Map<string, Point>) {
  const columns = new Map<number, { y: number; height: number; width: number }[]>();
  for (const node of model.nodes) {
    const p = positions.get(node.id)!;
    const size = nodeSize(node);
    const centre = Math.round(p.x + size.width / 2);
    if (!columns.has(centre)) columns.set(centre, []);
    columns.get(centre)!.push({ y: p.y, ...size });
  }
  const centres = [...columns.keys()].sort((a, b) => a - b);
  const overlaps: string[] = [];
  centres.forEach((centre, i) => {
    const next = centres[i + 1];
    if (next !== undefined && next - centre < 190) overlaps.push(`columns ${centre} and ${next}`);
    const boxes = columns.get(centre)!.sort((a, b) => a.y - b.y);
    for (let j = 1; j < boxes.length; j++) {
      if (boxes[j]!.y < boxes[j - 1]!.y + boxes[j - 1]!.height) overlaps.push(`column ${centre} row ${j}`);
    }
  });
  expect(overlaps).toEqual([]);
}

describe('dagreLayout', () => {
  it('lays a diamond out left to right without overlaps', () => {
    const model = diamond();
    const positions = dagreLayout(model);
    expectLayered(model, positions);
    expectNoOverlap(model, positions);
    expect(positions.get('task:b')!.x).toBe(positions.get('task:c')!.x);
  });
});

describe('layeredLayout', () => {
  it('lays a diamond out left to right without overlaps', () => {
    const model = diamond();
    const positions = layeredLayout(model);
    expectLayered(model, positions);
    expectNoOverlap(model, positions);
  });

  it('handles an expanded 5,000-task fan-out quickly', () => {
    const items = Array.from({ length: 5_000 }, (_, i) => spec(`i${i}`, ['plan']));
    const model = buildGraph([spec('plan'), ...items, spec('reduce', items.map((t) => t.id))], { collapse: false, minGroupSize: 8 });
    const started = performance.now();
    const positions = layeredLayout(model);
    expect(performance.now() - started).toBeLessThan(1_000);
    expectLayered(model, positions);
    expectNoOverlap(model, positions);
  });
});

describe('layoutGraph', () => {
  it('switches to the linear layout past the dagre limit', () => {
    const roots = Array.from({ length: DAGRE_MAX_NODES + 1 }, (_, i) => spec(`r${i}`));
    const model = buildGraph(roots, { collapse: false, minGroupSize: 8 });
    const positions = layoutGraph(model);
    // The linear layout stacks roots in one column.
    expect(new Set([...positions.values()].map((p) => p.x)).size).toBe(1);
  });
});
