import { describe, expect, it } from 'vitest';
import type { TaskPage, TaskPageQuery } from '../api/types';
import { task } from '../testing/fixtures';
import { countIn, fetchMembers } from './useStateMembers';
import { zeroCounts } from '../live/runReducer';

describe('fetchMembers', () => {
  it('reads every page of the chosen states', async () => {
    const queries: TaskPageQuery[] = [];
    const pages: Record<string, TaskPage> = {
      '': { tasks: [task('a', { state: 'failed' }), task('c', { state: 'failed' })], next_after: 'c', next_since: 0 },
      c: { tasks: [task('x', { state: 'skipped' })], next_after: null, next_since: 0 },
    };
    const source = {
      listTasks: async (_id: string, query: TaskPageQuery) => {
        queries.push(query);
        return pages[query.after ?? '']!;
      },
    };
    const tasks = await fetchMembers('r1', ['failed', 'skipped'], undefined, source);
    expect(tasks.map((t) => t.id)).toEqual(['a', 'c', 'x']);
    expect(queries.map((q) => [q.states, q.after])).toEqual([
      [['failed', 'skipped'], null],
      [['failed', 'skipped'], 'c'],
    ]);
  });

  it('stops on a cursor that does not move', async () => {
    let calls = 0;
    const source = {
      listTasks: async () => {
        calls += 1;
        return { tasks: [task('a')], next_after: 'a', next_since: 0 };
      },
    };
    const tasks = await fetchMembers('r1', ['pending'], undefined, source);
    expect(calls).toBe(2);
    expect(tasks).toHaveLength(2);
  });
});

describe('countIn', () => {
  it('sums the chosen states', () => {
    expect(countIn({ ...zeroCounts(), failed: 2, skipped: 3, succeeded: 9 }, ['failed', 'skipped'])).toBe(5);
    expect(countIn(zeroCounts(), [])).toBe(0);
  });
});
