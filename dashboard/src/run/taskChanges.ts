// What changed in a run since a read, rather than the whole run again: every task row
// carries the run's sequence at its last write, and `GET /runs/{id}/tasks?since=N`
// answers only the rows written at or after N (whole, as they are now), with the cursor
// to ask with next (`next_since` of the first page, read before any row). A viewer that
// read everything once and then merges each answer by id holds what a full read would
// answer; a row may come again unchanged (a cursor includes its own commit).

import { api } from '../api/client';
import type { Task, TaskPage } from '../api/types';
import { TASK_PAGE_SIZE } from '../live/loadRun';
import type { PageSource } from './useStateMembers';

/** One read of a run's tasks: all of them (`since` null) or those changed since. */
export interface ChangeRead {
  tasks: Task[];
  /** The `since` of the next read. */
  cursor: number;
}

/** Every task of run `runId` changed since `since` (every task when null), all pages. */
export async function fetchChanges(
  runId: string,
  since: number | null,
  signal?: AbortSignal,
  source: PageSource = api,
): Promise<ChangeRead> {
  const tasks: Task[] = [];
  let after: string | null = null;
  let cursor: number | null = null;
  for (;;) {
    const page: TaskPage = await source.listTasks(runId, { after, since, limit: TASK_PAGE_SIZE }, signal);
    // The first page's: read before any row of this read, so nothing written after
    // any of them is behind it. A later page's may be past changes to earlier pages.
    cursor ??= page.next_since;
    for (const task of page.tasks) tasks.push(task);
    // A cursor that does not move would ask for the same page forever.
    if (!page.next_after || page.next_after === after || page.tasks.length === 0) return { tasks, cursor };
    after = page.next_after;
  }
}
