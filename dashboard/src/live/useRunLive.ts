// One run's live view: the run loaded over REST (summary first, then its tasks), then the
// run's WebSocket stream resumed from the loaded seq, so the server replays what followed
// instead of sending the whole run again (at 100,000 tasks, tens of megabytes). Events
// go through the pure reducer at most once per animation frame. When the reducer asks for
// it (a spawned task appeared, an agent task finished), the run is loaded again, at most
// once per REFETCH_MS, and merged.
//
// A big run (subscription.ts) is not followed task by task: nobody reads thousands of
// events a second. Its stream carries the run's summary (exact counts, state) and the
// events of the rows on screen (`setVisible`). When those change (the user scrolled),
// the page subscribes again, debounced, resuming exactly where the last stream stopped,
// and reads the rows that came into view over REST: while off screen they were not
// followed.

import { useCallback, useEffect, useReducer, useRef, useState, type Dispatch } from 'react';
import { api, ApiError } from '../api/client';
import { getToken } from '../api/auth';
import type { EventsFrame, LiveEvent, RunHead, RunSnapshotFrame, RunSummary, Task } from '../api/types';
import { createFrameBatch } from './frameBatch';
import { loadRun } from './loadRun';
import { emptyRunView, runReducer, type RunAction, type RunView } from './runReducer';
import { createRefetcher, type Refetcher } from './refetch';
import { newlyVisible, pagesCovering } from './rowRefresh';
import { openLiveSocket, runStreamSeq, type LiveSocket, type SocketStatus } from './socket';
import { BIG_RUN_TASKS, subscriptionFor, subscriptionKey, subscriptionParams, type Subscription } from './subscription';

/** Refetches of a growing run are at most this frequent. */
export const REFETCH_MS = 500;
/** The rows on screen must hold still this long before the stream follows them instead. */
export const VISIBLE_SETTLE_MS = 200;

/** A run whose tasks are still arriving: its summary, and the tasks in so far (not live yet). */
export interface RunLoading {
  summary: RunHead;
  tasks: readonly Task[];
}

export interface RunLive {
  view: RunView;
  /** Set while the first load is under way, once its summary is in. */
  loading: RunLoading | null;
  status: SocketStatus;
  error: ApiError | Error | null;
  dispatch: Dispatch<RunAction>;
  /**
   * Whether the stream follows only the visible rows (a big run): tasks off screen may
   * hold old states, so filtering by state must ask the server.
   */
  partial: boolean;
  /** Tells which tasks are on screen now; a big run's stream follows these. */
  setVisible: (ids: readonly string[]) => void;
}

/** A big run's stream snapshot: the summary, and the followed tasks (`tasks=` only). */
interface PartialSnapshotFrame {
  type: 'snapshot';
  run: RunSummary;
  tasks?: Task[];
  seq: number;
}

/** What one stream frame hands the reducer. */
interface Burst {
  events: LiveEvent[];
  run?: RunSummary;
}

function sameIds(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((id, i) => id === b[i]);
}

export function useRunLive(runId: string): RunLive {
  const [view, dispatch] = useReducer(runReducer, emptyRunView);
  const [loading, setLoading] = useState<RunLoading | null>(null);
  const [status, setStatus] = useState<SocketStatus>('connecting');
  const [error, setError] = useState<ApiError | Error | null>(null);
  /** Set for a big run once loaded: the seq its first partial stream resumes from. */
  const [partialFrom, setPartialFrom] = useState<{ run: string; seq: number; tasks: number } | null>(null);
  /** The rows on screen as last told, and once they held still for VISIBLE_SETTLE_MS. */
  const visible = useRef<readonly string[]>([]);
  const settleTimer = useRef<ReturnType<typeof setTimeout> | null>(null);
  const [settled, setSettled] = useState<readonly string[]>([]);
  const refetcher = useRef<Refetcher | null>(null);
  /** The latest view, for reads started outside a render (which rows to refresh, as of when). */
  const latest = useRef<RunView>(view);

  useEffect(() => {
    latest.current = view;
  }, [view]);

  // Told on every scrolled frame: no render until the rows hold still.
  const setVisible = useCallback((ids: readonly string[]) => {
    if (sameIds(visible.current, ids)) return;
    visible.current = ids;
    if (settleTimer.current !== null) clearTimeout(settleTimer.current);
    settleTimer.current = setTimeout(() => {
      settleTimer.current = null;
      setSettled(ids);
    }, VISIBLE_SETTLE_MS);
  }, []);

  useEffect(
    () => () => {
      if (settleTimer.current !== null) clearTimeout(settleTimer.current);
    },
    [],
  );

  useEffect(() => {
    const refetch = createRefetcher({
      fetch: (signal) => loadRun(runId, { signal }),
      onResult: (run) => dispatch({ type: 'refetched', run }),
      intervalMs: REFETCH_MS,
    });
    refetcher.current = refetch;
    return () => {
      refetch.close();
      if (refetcher.current === refetch) refetcher.current = null;
    };
  }, [runId]);

  useEffect(() => {
    if (view.refetchWanted > 0) refetcher.current?.request();
  }, [view.refetchWanted]);

  useEffect(() => {
    const controller = new AbortController();
    const events = createFrameBatch<LiveEvent>((batch) => dispatch({ type: 'events', events: batch }));
    let socket: LiveSocket | null = null;
    const follow = (since: number | null) => {
      socket = openLiveSocket<RunSnapshotFrame>({
        run: runId,
        token: getToken(),
        since,
        seqOf: runStreamSeq,
        onSnapshot: (frame) => {
          // Events held for the next frame are older than this snapshot: they go first.
          events.flush();
          setError(null);
          dispatch({ type: 'snapshot', run: frame.run, seq: frame.seq });
        },
        onEvents: (batch) => events.push(batch),
        onStatus: setStatus,
      });
    };
    loadRun(runId, { signal: controller.signal, onProgress: (summary, tasks) => setLoading({ summary, tasks }) }).then(
      (run) => {
        if (controller.signal.aborted) return;
        setLoading(null);
        dispatch({ type: 'snapshot', run, seq: run.last_seq });
        // A big run's stream is opened by the effect below, for the rows on screen.
        if (run.task_count > BIG_RUN_TASKS) setPartialFrom({ run: runId, seq: run.last_seq, tasks: run.task_count });
        else follow(run.last_seq);
      },
      (err: unknown) => {
        if (controller.signal.aborted) return;
        setLoading(null);
        setError(err instanceof Error ? err : new Error(String(err)));
        // No such run: the socket would be refused forever, so do not knock. Otherwise
        // the stream's snapshot can still bring the run.
        if (err instanceof ApiError && err.status === 404) setStatus('closed');
        else follow(null);
      },
    );
    return () => {
      controller.abort();
      events.close();
      socket?.close();
    };
  }, [runId]);

  // A big run: one stream for the summary and the settled visible rows, opened again when they change.
  // Another run's (the page moved to a new run id): not ours.
  const partialRun = partialFrom?.run === runId ? partialFrom : null;
  const subscription: Subscription | null = partialRun ? subscriptionFor(partialRun.tasks, settled) : null;
  const key = subscription ? subscriptionKey(subscription) : null;
  const resume = useRef<number | null>(null);
  const followed = useRef<readonly string[]>([]);
  useEffect(() => {
    resume.current = partialFrom?.seq ?? null;
    followed.current = [];
  }, [partialFrom]);

  useEffect(() => {
    if (!partialRun || !subscription) return;
    const ids = subscription.detail === 'only' ? subscription.tasks : [];
    const controller = new AbortController();
    let replaced = false;
    const bursts = createFrameBatch<Burst>((held) => {
      let run: RunSummary | undefined;
      const all: LiveEvent[] = [];
      for (const burst of held) {
        for (const e of burst.events) all.push(e);
        if (burst.run) run = burst.run;
      }
      dispatch({ type: 'events', events: all, run, partial: true });
    });
    const socket = openLiveSocket<PartialSnapshotFrame>({
      run: runId,
      token: getToken(),
      since: resume.current,
      params: subscriptionParams(subscription),
      seqOf: runStreamSeq,
      onSnapshot: (frame) => {
        bursts.flush();
        setError(null);
        dispatch({ type: 'partialSnapshot', run: frame.run, tasks: frame.tasks ?? [], seq: frame.seq });
      },
      onEvents: (events: LiveEvent[], frame: EventsFrame) => bursts.push([{ events, run: frame.run ?? undefined }]),
      // A stream closed to make way for the next says nothing about the run's liveness.
      onStatus: (s) => {
        if (!replaced) setStatus(s);
      },
    });
    // Rows that came into view were not followed while off screen: read them afresh. The
    // stream resumed from before this read, so whatever happens after it arrives too.
    // Until its read is in, a row is not up to date: the next subscription reads it again.
    const unread = new Set(newlyVisible(followed.current, ids));
    const table = latest.current.tasks;
    for (const page of pagesCovering(table.ids, (id) => table.indexOf(id), [...unread])) {
      api.listTasks(runId, page, controller.signal).then(
        (answer) => {
          if (controller.signal.aborted) return;
          for (const task of answer.tasks) unread.delete(task.id);
          dispatch({ type: 'rows', tasks: answer.tasks, asOf: table });
        },
        () => {
          // The row keeps what it showed; the next scroll reads it again.
        },
      );
    }
    return () => {
      controller.abort();
      bursts.flush();
      resume.current = socket.cursor() ?? resume.current;
      followed.current = ids.filter((id) => !unread.has(id));
      replaced = true;
      socket.close();
      bursts.close();
    };
    // `key` stands for the subscription: a new one only when what it asks for changes.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [runId, partialRun, key]);

  return { view, loading, status, error, dispatch, partial: partialRun !== null, setVisible };
}
