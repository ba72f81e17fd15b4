// One run's live view: the run loaded over REST (summary first, then its tasks), then the
// run's WebSocket stream resumed from the loaded seq, so the server replays what followed
// instead of sending the whole run again (at 100,000 tasks, tens of megabytes). Events
// go through the pure reducer at most once per animation frame. When the reducer asks for
// it (a spawned task appeared, an agent task finished), the run is loaded again, at most
// once per REFETCH_MS, and merged.

import { useEffect, useReducer, useRef, useState, type Dispatch } from 'react';
import { ApiError } from '../api/client';
import { getToken } from '../api/auth';
import type { LiveEvent, RunSnapshotFrame, RunSummary, Task } from '../api/types';
import { createFrameBatch } from './frameBatch';
import { loadRun } from './loadRun';
import { emptyRunView, runReducer, type RunAction, type RunView } from './runReducer';
import { createRefetcher, type Refetcher } from './refetch';
import { openLiveSocket, runStreamSeq, type LiveSocket, type SocketStatus } from './socket';

/** Refetches of a growing run are at most this frequent. */
export const REFETCH_MS = 500;

/** A run whose tasks are still arriving: its summary, and the tasks in so far (not live yet). */
export interface RunLoading {
  summary: RunSummary;
  tasks: readonly Task[];
}

export interface RunLive {
  view: RunView;
  /** Set while the first load is under way, once its summary is in. */
  loading: RunLoading | null;
  status: SocketStatus;
  error: ApiError | Error | null;
  dispatch: Dispatch<RunAction>;
}

export function useRunLive(runId: string): RunLive {
  const [view, dispatch] = useReducer(runReducer, emptyRunView);
  const [loading, setLoading] = useState<RunLoading | null>(null);
  const [status, setStatus] = useState<SocketStatus>('connecting');
  const [error, setError] = useState<ApiError | Error | null>(null);
  const refetcher = useRef<Refetcher | null>(null);

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
        follow(run.last_seq);
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

  return { view, loading, status, error, dispatch };
}
