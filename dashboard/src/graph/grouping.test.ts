import { describe, expect, it } from 'vitest';
import { buildGraph, groupNodeId, spawnedGroupId, taskDepths, taskNodeId } from './grouping';
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

describe('buildGraph with spawned tasks', () => {
  const child = (id: string, parent: string, depends_on: string[] = [parent]): TaskSpec => ({
    id, handler: 'agent', depends_on, parent, agent: 'researcher',
  });
  /** plan spawned five researchers and a merge; critique waited on plan, and now on them too. */
  function swarm(): TaskSpec[] {
    const items = Array.from({ length: 5 }, (_, i) => `plan.${i}`);
    return [
      { id: 'plan', handler: 'agent', depends_on: [], agent: 'planner' },
      { id: 'critique', handler: 'agent', depends_on: ['plan', ...items, 'plan.merge'], agent: 'critic' },
      { id: 'report', handler: 'agent', depends_on: ['critique'], agent: 'writer' },
      ...items.map((id) => child(id, 'plan')),
      child('plan.merge', 'plan', items),
    ];
  }

  it('collapses a parent\'s children, whatever their number and inner edges, into one group after it', () => {
    const model = buildGraph(swarm(), collapsed);
    const group = spawnedGroupId('task:plan');
    expect(model.nodes.map((n) => n.id)).toEqual(['task:plan', group, 'task:critique', 'task:report']);
    expect(model.nodes[1]).toMatchObject({
      kind: 'group',
      label: 'spawned by plan',
      handler: 'agent',
      agents: true,
      members: ['plan.0', 'plan.1', 'plan.2', 'plan.3', 'plan.4', 'plan.merge'],
      spawnedBy: { node: 'task:plan', label: 'plan' },
    });
    expect(model.nodeOf.get('plan.merge')).toBe(group);
    // parent → children → the parent's dependents; the parent's direct edge to them is implied.
    expect(model.edges.map((e) => e.id).sort()).toEqual(
      [`task:plan->${group}`, `${group}->task:critique`, 'task:critique->task:report'].sort(),
    );
  });

  it('groups even a single child', () => {
    const model = buildGraph([spec('plan'), spec('after', ['plan', 'plan.0']), child('plan.0', 'plan')], collapsed);
    expect(model.nodes.map((n) => n.id)).toEqual(['task:plan', spawnedGroupId('task:plan'), 'task:after']);
  });

  it('puts grandchildren in their grandparent\'s group', () => {
    const tasks = [spec('plan'), child('plan.0', 'plan'), child('plan.0.0', 'plan.0'), child('plan.0.1', 'plan.0')];
    const model = buildGraph(tasks, collapsed);
    expect(model.nodes).toHaveLength(2);
    expect(model.nodes[1]).toMatchObject({ members: ['plan.0', 'plan.0.0', 'plan.0.1'] });
  });

  it('draws the children of an expanded parent one by one, grouping their own children', () => {
    const tasks = [...swarm(), child('plan.0.a', 'plan.0'), child('plan.0.b', 'plan.0')];
    const model = buildGraph(tasks, { ...collapsed, expanded: new Set(['task:plan']) });
    const ids = model.nodes.map((n) => n.id);
    expect(ids).toContain('task:plan.0');
    expect(ids).toContain('task:plan.merge');
    expect(ids).toContain(spawnedGroupId('task:plan.0'));
    expect(ids).not.toContain(spawnedGroupId('task:plan'));
    expect(model.nodeOf.get('plan.0.b')).toBe(spawnedGroupId('task:plan.0'));
    // With no group in between, the plan → critique edge stays (critique depends on it).
    expect(model.edges.map((e) => e.id)).toContain('task:plan->task:critique');
  });

  it('still folds a big expanded fan-out by identical dependencies', () => {
    const kids = Array.from({ length: 12 }, (_, i) => child(`plan.${i}`, 'plan'));
    const model = buildGraph([spec('plan'), ...kids], { ...collapsed, expanded: new Set(['task:plan']) });
    expect(model.nodes.map((n) => n.id)).toEqual(['task:plan', groupNodeId('plan.0')]);
    expect(model.nodes[1]).toMatchObject({ label: 'plan.*' });
    expect((model.nodes[1] as { spawnedBy?: unknown }).spawnedBy).toBeUndefined();
  });

  it('gives the children of a fan-out\'s members one group under the fan-out', () => {
    const researchers = Array.from({ length: 10 }, (_, i) => spec(`r${i}`, ['plan']));
    const kids = researchers.flatMap((r) => [child(`${r.id}.0`, r.id), child(`${r.id}.1`, r.id)]);
    const model = buildGraph([spec('plan'), ...researchers, ...kids], collapsed);
    const fanOut = groupNodeId('r0');
    expect(model.nodes.map((n) => n.id)).toEqual(['task:plan', fanOut, spawnedGroupId(fanOut)]);
    expect(model.nodes[2]).toMatchObject({ label: 'spawned by r*', spawnedBy: { node: fanOut, label: 'r*' } });
    expect(model.nodes[2]!.kind === 'group' && model.nodes[2]!.members).toHaveLength(20);
  });

  it('draws every spawned task when collapsing is off', () => {
    const model = buildGraph(swarm(), { collapse: false, minGroupSize: 8 });
    expect(model.nodes).toHaveLength(9);
    expect(model.nodes.every((n) => n.kind === 'task')).toBe(true);
    expect(model.edges.map((e) => e.id)).toContain('task:plan->task:critique');
  });

  it('keeps node ids stable as spawned tasks arrive', () => {
    const before = buildGraph([spec('plan'), spec('critique', ['plan'])], collapsed);
    const after = buildGraph(swarm(), collapsed);
    for (const node of before.nodes) expect(after.nodes.map((n) => n.id)).toContain(node.id);
    // Agent tasks carry their agent for a node tall enough to show usage.
    expect(after.nodes[0]).toMatchObject({ kind: 'task', agent: 'planner' });
  });
});
