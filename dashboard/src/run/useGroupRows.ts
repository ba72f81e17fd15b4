// A big run's graph draws its groups from the states we hold, but its stream follows only
// the tasks drawn one by one (live/subscription.ts): a group's members would keep the
// states they were loaded with. While the graph is shown, every task is read again over
// REST (all pages) and merged as fresh rows, on a clock while the run executes and once
// more when it ends. The clock slows with the run's size: a read of 100,000 tasks is
// 20 pages, and nobody reads a group's counts ten times a second.

import { useEffect, useRef, type Dispatch } from 'react';
import { createPoller } from '../live/poll';
import { createRefetcher } from '../live/refetch';
import type { RunAction } from '../live/runReducer';
import type { TaskTable } from '../live/taskTable';
import { fetchMembers } from './useStateMembers';

/** Group members are read again at most this often... */
export const GROUP_REFRESH_MS = 3_000;
/** ...and no more often than this many milliseconds per task (10 s at 100,000 tasks). */
export const GROUP_REFRESH_MS_PER_TASK = 0.1;

/** How often a running run of `taskCount` tasks has its group members read again. */
export function groupRefreshMs(taskCount: number): number {
  return Math.max(GROUP_REFRESH_MS, Math.round(taskCount * GROUP_REFRESH_MS_PER_TASK));
}

interface Options {
  runId: string;
  /** A big run whose graph is shown. */
  enabled: boolean;
  /** The run executes. */
  live: boolean;
  taskCount: number;
  tasks: TaskTable;
  dispatch: Dispatch<RunAction>;
}

/** Keeps the states behind a big run's graph groups current while the graph is shown. */
export function useGroupRows({ runId, enabled, live, taskCount, tasks, dispatch }: Options): void {
  const table = useRef(tasks);
  useEffect(() => {
    table.current = tasks;
  }, [tasks]);
  const intervalMs = groupRefreshMs(taskCount);

  useEffect(() => {
    if (!enabled) return;
    const options = {
      fetch: async (signal: AbortSignal) => {
        const asOf = table.current;
        return { asOf, tasks: await fetchMembers(runId, [], signal) };
      },
      onResult: ({ asOf, tasks: fresh }: { asOf: TaskTable; tasks: Awaited<ReturnType<typeof fetchMembers>> }) =>
        dispatch({ type: 'rows', tasks: fresh, asOf }),
      intervalMs,
    };
    // Not live: the run ended (or had ended when opened); one read settles the final states.
    const reader = live ? createPoller(options) : createRefetcher(options);
    if (!live) reader.request();
    return () => reader.close();
  }, [enabled, live, intervalMs, runId, dispatch]);
}
