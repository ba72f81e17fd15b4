import { describe, expect, it } from 'vitest';
import { buildGraph, groupNodeId, taskDepths, taskNodeId } from './grouping';
import type { TaskSpec } from '../live/runReducer';

const spec = (id: string, depends_on: string[] = [], handler = 'echo'): TaskSpec => ({ id, handler, depends_on });
const collapsed = { collapse: true, minGroupSize: 8 };

function fanOut(n: number, prefix = 'item-'): TaskSpec[] {
  const items = Array.from({ length: n }, (_, i) => spec(`${prefix}${i}`, ['plan'], 'sleep'));
  return [spec('plan'), ...items, spec('reduce', items.map((t) => t.id), 'sum')];
}

describe('taskDepths', () => {
  it('gives each task one more than its deepest dependency', () => {
    const depths = taskDepths([spec('d', ['b', 'c']), spec('a'), spec('b', ['a']), spec('c', ['a', 'b'])]);
    expect(Object.fromEntries(depths)).toEqual({ a: 0, b: 1, c: 2, d: 3 });
  });

  it('keeps tasks on a cycle instead of losing them', () => {
    const depths = taskDepths([spec('a'), spec('x', ['y']), spec('y', ['x'])]);
    expect(depths.size).toBe(3);
  });
});

describe('buildGraph', () => {
  it('draws a small diamond task by task', () => {
    const model = buildGraph([spec('a'), spec('b', ['a']), spec('c', ['a']), spec('d', ['b', 'c'])], collapsed);
    expect(model.nodes.map((n) => n.id)).toEqual(['task:a', 'task:b', 'task:c', 'task:d']);
    expect(model.edges.map((e) => e.id).sort()).toEqual(
      ['task:a->task:b', 'task:a->task:c', 'task:b->task:d', 'task:c->task:d'].sort(),
    );
  });

  it('collapses a 5,000-task fan-out into one group between plan and reduce', () => {
    const model = buildGraph(fanOut(5_000), collapsed);
    expect(model.nodes).toHaveLength(3);
    const group = model.nodes[1]!;
    expect(group).toMatchObject({ kind: 'group', id: groupNodeId('item-0'), label: 'item-*', handler: 'sleep' });
    expect(group.kind === 'group' && group.members.length).toBe(5_000);
    expect(model.edges.map((e) => e.id)).toEqual([`task:plan->${group.id}`, `${group.id}->task:reduce`]);
    expect(model.nodeOf.get('item-4999')).toBe(group.id);
  });

  it('folds a fan-out of chains into a chain of groups', () => {
    const tasks: TaskSpec[] = [spec('plan')];
    for (let i = 0; i < 20; i++) tasks.push(spec(`a${i}`, ['plan']), spec(`b${i}`, [`a${i}`]));
    const model = buildGraph(tasks, collapsed);
    expect(model.nodes.map((n) => n.kind)).toEqual(['task', 'group', 'group']);
    expect(model.edges).toHaveLength(2);
  });

  it('leaves small sibling sets alone', () => {
    const model = buildGraph(fanOut(7), collapsed);
    expect(model.nodes.every((n) => n.kind === 'task')).toBe(true);
    expect(model.nodes).toHaveLength(9);
  });

  it('keeps siblings with different dependencies apart', () => {
    const tasks = [spec('p'), spec('q')];
    for (let i = 0; i < 10; i++) tasks.push(spec(`x${i}`, ['p']), spec(`y${i}`, ['q']));
    const model = buildGraph(tasks, collapsed);
    const groups = model.nodes.filter((n) => n.kind === 'group');
    expect(groups.map((g) => g.id)).toEqual([groupNodeId('x0'), groupNodeId('y0')]);
  });

  it('groups independent roots and labels mixed handlers', () => {
    const tasks = Array.from({ length: 10 }, (_, i) => spec(`n${i}`, [], i % 2 ? 'noop' : 'echo'));
    const model = buildGraph(tasks, collapsed);
    expect(model.nodes).toEqual([expect.objectContaining({ kind: 'group', handler: 'mixed' })]);
    expect(model.edges).toEqual([]);
  });

  it('draws every task when collapsing is off', () => {
    const model = buildGraph(fanOut(50), { collapse: false, minGroupSize: 8 });
    expect(model.nodes).toHaveLength(52);
    expect(model.edges).toHaveLength(100);
    expect(model.nodeOf.get('item-3')).toBe(taskNodeId('item-3'));
  });

  it('ignores dependencies that name no task', () => {
    const model = buildGraph([spec('a', ['ghost'])], collapsed);
    expect(model.edges).toEqual([]);
  });
});
