import { useEffect } from 'react';

/**
 * Calls `poll` now and every `intervalMs` while mounted. A safety net beside the live
 * stream for values the server may not push on every change (heartbeats, idle queues).
 * `poll` must be stable (useCallback), or polling restarts on each render.
 */
export function usePolling(poll: (signal: AbortSignal) => Promise<unknown>, intervalMs: number): void {
  useEffect(() => {
    const controller = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const tick = () => {
      poll(controller.signal)
        .catch(() => {
          // The live stream still runs; the next tick retries.
        })
        .finally(() => {
          if (!controller.signal.aborted) timer = setTimeout(tick, intervalMs);
        });
    };
    tick();
    return () => {
      controller.abort();
      clearTimeout(timer);
    };
  }, [poll, intervalMs]);
}
