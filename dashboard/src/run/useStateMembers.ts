// A big run's state filter asks the server. Its stream follows only the rows on screen
// (live/subscription.ts), so the states we hold for the others may be old: filtering
// them here would show tasks that have moved on and miss ones that arrived. The tasks in
// the chosen states are read with `GET /runs/{id}/tasks?state=…` (all pages), merged into
// the view (they are fresh), and the table shows the ones in both. The read is repeated,
// throttled, while the chosen states' exact count (from the summary) says it is out of date,
// and every MEMBERS_REFETCH_MS while the run executes: equal counts do not mean the same
// members (as many tasks may have entered `running` as left it).

import { useEffect, useRef, useState, type Dispatch } from 'react';
import { api } from '../api/client';
import type { StateCounts, Task, TaskPage, TaskPageQuery, TaskState } from '../api/types';
import { createPoller } from '../live/poll';
import { createRefetcher, type Refetcher, type RefetchOptions } from '../live/refetch';
import type { RunAction } from '../live/runReducer';
import { TASK_PAGE_SIZE } from '../live/loadRun';
import type { TaskTable } from '../live/taskTable';

/** Reads of a filter's members are at most this frequent. */
export const MEMBERS_REFETCH_MS = 3_000;

/** The call the read makes, so tests can answer it. */
export interface PageSource {
  listTasks(id: string, query: TaskPageQuery, signal?: AbortSignal): Promise<TaskPage>;
}

/** Every task of run `runId` in one of `states`, in the run's order, a page at a time. */
export async function fetchMembers(
  runId: string,
  states: readonly TaskState[],
  signal?: AbortSignal,
  source: PageSource = api,
): Promise<Task[]> {
  const tasks: Task[] = [];
  let after: string | null = null;
  for (;;) {
    const page: TaskPage = await source.listTasks(runId, { states, after, limit: TASK_PAGE_SIZE }, signal);
    for (const task of page.tasks) tasks.push(task);
    // A cursor that does not move would ask for the same page forever.
    if (!page.next_after || page.next_after === after || page.tasks.length === 0) return tasks;
    after = page.next_after;
  }
}

/** How many tasks the counts put in `states`. */
export function countIn(counts: StateCounts, states: Iterable<TaskState>): number {
  let n = 0;
  for (const s of states) n += counts[s] ?? 0;
  return n;
}

interface Options {
  runId: string;
  states: ReadonlySet<TaskState>;
  counts: StateCounts;
  /** Only a big run's filter asks the server; a small run's states are all live. */
  enabled: boolean;
  /** The run executes: its tasks move between states, so the members are read again on a clock. */
  live: boolean;
  tasks: TaskTable;
  dispatch: Dispatch<RunAction>;
}

/** The ids the server has in the chosen states, or null (not enabled, nothing chosen, not read yet). */
export function useStateMembers({ runId, states, counts, enabled, live, tasks, dispatch }: Options): ReadonlySet<string> | null {
  const key = [...states].sort().join(',');
  const wanted = countIn(counts, states);
  const [result, setResult] = useState<{ key: string; ids: ReadonlySet<string> } | null>(null);
  const table = useRef(tasks);
  const refetcher = useRef<Refetcher | null>(null);

  useEffect(() => {
    table.current = tasks;
  }, [tasks]);

  useEffect(() => {
    if (!enabled || !key) return;
    const chosen = key.split(',') as TaskState[];
    const options: RefetchOptions<{ asOf: TaskTable; tasks: Task[] }> = {
      fetch: async (signal) => {
        const asOf = table.current;
        return { asOf, tasks: await fetchMembers(runId, chosen, signal) };
      },
      onResult: ({ asOf, tasks: fresh }) => {
        dispatch({ type: 'rows', tasks: fresh, asOf });
        setResult({ key, ids: new Set(fresh.map((t) => t.id)) });
      },
      intervalMs: MEMBERS_REFETCH_MS,
    };
    const reader = live ? createPoller(options) : createRefetcher(options);
    refetcher.current = reader;
    reader.request();
    return () => {
      reader.close();
      if (refetcher.current === reader) refetcher.current = null;
    };
  }, [enabled, live, key, runId, dispatch]);

  useEffect(() => {
    if (enabled && result?.key === key && result.ids.size !== wanted) refetcher.current?.request();
  }, [enabled, key, result, wanted]);

  return enabled && result?.key === key ? result.ids : null;
}
