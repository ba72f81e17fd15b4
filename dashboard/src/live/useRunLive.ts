// One run's live view: a REST fetch for a fast first paint, then the run's WebSocket
// stream (snapshot + events) through the pure reducer. Each frame is one dispatch, so a
// coalesced burst of events is one React update.

import { useEffect, useReducer, useState, type Dispatch } from 'react';
import { api, ApiError } from '../api/client';
import { getToken } from '../api/auth';
import type { RunSnapshotFrame } from '../api/types';
import { emptyRunView, runReducer, type RunAction, type RunView } from './runReducer';
import { openLiveSocket, runStreamSeq, type SocketStatus } from './socket';

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
