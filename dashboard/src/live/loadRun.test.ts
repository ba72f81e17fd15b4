import { describe, expect, it, vi } from 'vitest';
import { ApiError, NOT_JSON } from '../api/client';
import type { TaskPage, TaskPageQuery } from '../api/types';
import { run, summary, task } from '../testing/fixtures';
import { FIRST_PAGE_SIZE, loadRun, TASK_PAGE_SIZE, type RunSource } from './loadRun';

function source(pages: Record<string, TaskPage> | ApiError): RunSource & { queries: TaskPageQuery[] } {
  const queries: TaskPageQuery[] = [];
  return {
    queries,
    getRunSummary: vi.fn(async (id: string) => ({ ...summary(id, { task_count: 3, last_seq: 17 }), history: [] })),
    listTasks: vi.fn(async (_id: string, query: TaskPageQuery) => {
      queries.push(query);
      if (pages instanceof ApiError) throw pages;
      return pages[query.after ?? '']!;
    }),
    getRun: vi.fn(async (id: string) => ({ ...run(id, [task('whole')]), last_seq: 20 })),
  };
}

describe('loadRun', () => {
  it('reads the summary, then every page of tasks, and resumes from the summary seq', async () => {
    const src = source({
      '': { tasks: [task('a'), task('b')], next_after: 'b', next_since: 0 },
      b: { tasks: [task('c')], next_after: null, next_since: 0 },
    });
    const progress: number[] = [];
    const loaded = await loadRun('r1', { source: src, onProgress: (_, tasks) => progress.push(tasks.length) });
    expect(loaded.tasks.map((t) => t.id)).toEqual(['a', 'b', 'c']);
    expect(loaded).toMatchObject({ id: 'r1', last_seq: 17, task_count: 3 });
    expect(src.queries).toEqual([
      { after: null, limit: FIRST_PAGE_SIZE },
      { after: 'b', limit: TASK_PAGE_SIZE },
    ]);
    expect(progress).toEqual([0, 2, 3]);
    expect(src.getRun).not.toHaveBeenCalled();
  });

  it.each([404, 405])('falls back to the run document when the server has no task pages (%i)', async (status) => {
    const src = source(new ApiError(status, 'not_found', 'no route'));
    const loaded = await loadRun('r1', { source: src });
    expect(loaded.tasks.map((t) => t.id)).toEqual(['whole']);
    expect(loaded.last_seq).toBe(20);
  });

  it('falls back when an unrouted path answers the dashboard page instead of JSON', async () => {
    const src = source(new ApiError(200, NOT_JSON, 'text/html'));
    expect((await loadRun('r1', { source: src })).tasks.map((t) => t.id)).toEqual(['whole']);
  });

  it('passes other errors on', async () => {
    const src = source(new ApiError(500, 'internal', 'boom'));
    await expect(loadRun('r1', { source: src })).rejects.toThrow('boom');
    expect(src.getRun).not.toHaveBeenCalled();
  });

  it('stops on a cursor that does not move', async () => {
    const src = source({ '': { tasks: [task('a')], next_after: 'a', next_since: 0 }, a: { tasks: [task('b')], next_after: 'a', next_since: 0 } });
    const loaded = await loadRun('r1', { source: src });
    expect(loaded.tasks.map((t) => t.id)).toEqual(['a', 'b']);
  });
});
