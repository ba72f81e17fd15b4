// A big run's graph draws its groups from the states we hold, but its stream follows only
// the tasks drawn one by one (live/subscription.ts): a group's members would keep the
// states they were loaded with. While the graph is shown, the run's tasks are read over
// REST and merged as fresh rows, on a clock while the run executes and once more when it
// ends: all of them the first time, then only those changed since the last read
// (run/taskChanges.ts), so a viewer of a quiet 100,000-task run is sent a handful of rows,
// not 20 pages. A failed read, or the stream asking for a refetch, starts over from a
// full read. The clock slows with the run's size: the server still walks the run's rows
// to find the changed ones, and nobody reads a group's counts ten times a second.

import { useEffect, useRef, type Dispatch } from 'react';
import { createPoller } from '../live/poll';
import { createRefetcher } from '../live/refetch';
import type { RunAction } from '../live/runReducer';
import type { TaskTable } from '../live/taskTable';
import type { Task } from '../api/types';
import { fetchChanges, type ChangeRead } from './taskChanges';

/** Group members are read again at most this often... */
export const GROUP_REFRESH_MS = 3_000;
/** ...and no more often than this many milliseconds per task (10 s at 100,000 tasks). */
export const GROUP_REFRESH_MS_PER_TASK = 0.1;

/** How often a running run of `taskCount` tasks has its group members read again. */
export function groupRefreshMs(taskCount: number): number {
  return Math.max(GROUP_REFRESH_MS, Math.round(taskCount * GROUP_REFRESH_MS_PER_TASK));
}

/**
 * The `since` of the next read after one from `since` answered `tasks` and `cursor`.
 * A row the stream touched while the read was out is not merged (the reducer keeps
 * the stream's state, which may be older): the cursor then stays, so the next read
 * carries that row again.
 */
export function nextSince(
  since: number | null,
  tasks: readonly Task[],
  cursor: number,
  asOf: Pick<TaskTable, 'touched'>,
  now: Pick<TaskTable, 'touched'>,
): number | null {
  const skipped = tasks.some((t) => asOf.touched(t.id) !== now.touched(t.id));
  return skipped ? since : cursor;
}

/** One read of the group rows, with what it was asked from. */
interface GroupRead {
  asOf: TaskTable;
  key: string;
  from: number | null;
  read: ChangeRead;
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
  /** Changes when the stream asks for a refetch (it missed events): the next read is full. */
  resyncs: number;
}

/** Keeps the states behind a big run's graph groups current while the graph is shown. */
export function useGroupRows({ runId, enabled, live, taskCount, tasks, dispatch, resyncs }: Options): void {
  const table = useRef(tasks);
  useEffect(() => {
    table.current = tasks;
  }, [tasks]);
  // Where the next read starts, null for a full read; it holds for one run and until
  // the stream asks for a refetch (a new key), and an answer to an older key is merged
  // but does not set it.
  const key = `${runId}\n${resyncs}`;
  const current = useRef(key);
  useEffect(() => {
    current.current = key;
  }, [key]);
  const since = useRef<{ key: string; since: number | null }>({ key, since: null });
  const intervalMs = groupRefreshMs(taskCount);

  useEffect(() => {
    if (!enabled) return;
    const options = {
      fetch: async (signal: AbortSignal) => {
        const asOf = table.current;
        const key = current.current;
        const from = since.current.key === key ? since.current.since : null;
        try {
          return { asOf, key, from, read: await fetchChanges(runId, from, signal) };
        } catch (e) {
          // A refused cursor (a store restored from a backup) or a lost answer: start over.
          if (!signal.aborted) since.current = { key, since: null };
          throw e;
        }
      },
      onResult: ({ asOf, key, from, read }: GroupRead) => {
        dispatch({ type: 'rows', tasks: read.tasks, asOf });
        if (current.current === key) since.current = { key, since: nextSince(from, read.tasks, read.cursor, asOf, table.current) };
      },
      intervalMs,
    };
    // Not live: the run ended (or had ended when opened); one read settles the final states.
    const reader = live ? createPoller(options) : createRefetcher(options);
    if (!live) reader.request();
    return () => reader.close();
  }, [enabled, live, intervalMs, runId, dispatch]);
}
