// The selected task's detail (input, upstream outputs, attempts, logs), fetched when the
// panel opens and again whenever the task's own events arrive — throttled, so a chatty
// task costs at most one request per REFRESH_MS.

import { useEffect, useRef, useState } from 'react';
import { api } from '../api/client';
import type { TaskDetail } from '../api/types';

const REFRESH_MS = 500;

export interface TaskDetailState {
  detail: TaskDetail | null;
  error: Error | null;
}

export function useTaskDetail(runId: string, taskId: string, touched: number): TaskDetailState {
  const [state, setState] = useState<TaskDetailState>({ detail: null, error: null });
  const lastFetch = useRef(0);

  useEffect(() => {
    const controller = new AbortController();
    // Aim at lastFetch + REFRESH_MS, not now + REFRESH_MS: a steady stream of events must
    // still refresh on schedule instead of postponing it forever.
    const delay = Math.max(0, lastFetch.current + REFRESH_MS - Date.now());
    const timer = setTimeout(() => {
      lastFetch.current = Date.now();
      api.getTask(runId, taskId, controller.signal).then(
        (detail) => setState({ detail, error: null }),
        (error: unknown) => {
          if (!controller.signal.aborted) setState((s) => ({ ...s, error: error instanceof Error ? error : new Error(String(error)) }));
        },
      );
    }, delay);
    return () => {
      clearTimeout(timer);
      controller.abort();
    };
  }, [runId, taskId, touched]);

  return state;
}
