// The global stream (runs, workers, queues), connected once for the whole app so the
// queue history keeps accumulating while the user moves between pages.

import { createContext, useContext, useEffect, useReducer, useState, type Dispatch, type ReactNode } from 'react';
import { getToken } from '../api/auth';
import type { OverviewSnapshotFrame } from '../api/types';
import { emptyOverview, overviewReducer, type Overview, type OverviewAction } from './overviewReducer';
import { busStreamSeq, openLiveSocket, type SocketStatus } from './socket';

interface OverviewContextValue {
  overview: Overview;
  status: SocketStatus;
  dispatch: Dispatch<OverviewAction>;
}

const OverviewContext = createContext<OverviewContextValue | null>(null);

export function OverviewProvider({ children }: { children: ReactNode }) {
  const [overview, dispatch] = useReducer(overviewReducer, emptyOverview);
  const [status, setStatus] = useState<SocketStatus>('connecting');

  useEffect(() => {
    const socket = openLiveSocket<OverviewSnapshotFrame>({
      token: getToken(),
      seqOf: busStreamSeq,
      onSnapshot: (frame) => dispatch({ type: 'snapshot', frame, at_ms: Date.now() }),
      onEvents: (events) => dispatch({ type: 'events', events, at_ms: Date.now() }),
      onStatus: setStatus,
    });
    return () => socket.close();
  }, []);

  return <OverviewContext.Provider value={{ overview, status, dispatch }}>{children}</OverviewContext.Provider>;
}

export function useOverview(): OverviewContextValue {
  const value = useContext(OverviewContext);
  if (!value) throw new Error('useOverview outside OverviewProvider');
  return value;
}
