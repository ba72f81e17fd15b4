// One run's live view: a REST fetch for a fast first paint, then the run's WebSocket
// stream (snapshot + events) through the pure reducer. Each frame is one dispatch, so a
// coalesced burst of events is one React update. When the reducer asks for it (a spawned
// task appeared, an agent task finished), the run is fetched again, at most once per
// REFETCH_MS, and merged.

import { useEffect, useReducer, useRef, useState, type Dispatch } from 'react';
import { api, ApiError } from '../api/client';
import { getToken } from '../api/auth';
import type { RunSnapshotFrame } from '../api/types';
import { emptyRunView, runReducer, type RunAction, type RunView } from './runReducer';
import { createRefetcher, type Refetcher } from './refetch';
import { openLiveSocket, runStreamSeq, type SocketStatus } from './socket';

/** Refetches of a growing run are at most this frequent. */
export const REFETCH_MS = 500;

export interface RunLive {
  view: RunView;
  status: SocketStatus;
  error: ApiError | Error | null;
  dispatch: Dispatch<RunAction>;
}

export function useRunLive(runId: string): RunLive {
  const [view, dispatch] = useReducer(runReducer, emptyRunView);
  const [status, setStatus] = useState<SocketStatus>('connecting');
  const [error, setError] = useState<ApiError | Error | null>(null);
  const refetcher = useRef<Refetcher | null>(null);

  useEffect(() => {
    const refetch = createRefetcher({
      fetch: (signal) => api.getRun(runId, signal),
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
    api.getRun(runId, controller.signal).then(
      (run) => dispatch({ type: 'snapshot', run, seq: run.last_seq }),
      (err: unknown) => {
        if (controller.signal.aborted) return;
        setError(err instanceof Error ? err : new Error(String(err)));
        // No such run: the socket would be refused forever, so stop knocking.
        if (err instanceof ApiError && err.status === 404) socket.close();
      },
    );
    const socket = openLiveSocket<RunSnapshotFrame>({
      run: runId,
      token: getToken(),
      seqOf: runStreamSeq,
      onSnapshot: (frame) => {
        setError(null);
        dispatch({ type: 'snapshot', run: frame.run, seq: frame.seq });
      },
      onEvents: (events) => dispatch({ type: 'events', events }),
      onStatus: setStatus,
    });
    return () => {
      controller.abort();
      socket.close();
    };
  }, [runId]);

  return { view, status, error, dispatch };
}
