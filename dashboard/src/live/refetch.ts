// A throttled refetch: any number of requests become at most one fetch per interval, and
// a request made while a fetch is in flight is honoured by one more fetch after it, so the
// last request is always answered by a fetch that started after it. A fetch in flight is
// never cancelled by a newer request: under a steady stream of requests, answers keep
// arriving instead of being aborted one after another.

export interface Refetcher {
  request(): void;
  close(): void;
}

export interface RefetchOptions<T> {
  fetch: (signal: AbortSignal) => Promise<T>;
  onResult: (value: T) => void;
  intervalMs: number;
  /** Failed fetches in a row after which requests stop being retried until the next one. */
  maxRetries?: number;
  now?: () => number;
}

export function createRefetcher<T>({ fetch, onResult, intervalMs, maxRetries = 3, now = Date.now }: RefetchOptions<T>): Refetcher {
  const controller = new AbortController();
  let timer: ReturnType<typeof setTimeout> | null = null;
  let inFlight = false;
  let again = false;
  let failures = 0;
  let last = -Infinity;

  const start = () => {
    timer = null;
    last = now();
    inFlight = true;
    fetch(controller.signal)
      .then(
        (value) => {
          failures = 0;
          if (!controller.signal.aborted) onResult(value);
        },
        () => {
          // Retried a few times; past that the next request (the next event) tries again.
          failures += 1;
          if (failures <= maxRetries) again = true;
        },
      )
      .finally(() => {
        inFlight = false;
        if (again && !controller.signal.aborted) {
          again = false;
          schedule();
        }
      });
  };

  const schedule = () => {
    if (controller.signal.aborted) return;
    if (inFlight) {
      again = true;
      return;
    }
    if (timer !== null) return;
    timer = setTimeout(start, Math.max(0, last + intervalMs - now()));
  };

  return {
    request() {
      failures = 0;
      schedule();
    },
    close() {
      if (timer !== null) clearTimeout(timer);
      timer = null;
      controller.abort();
    },
  };
}
