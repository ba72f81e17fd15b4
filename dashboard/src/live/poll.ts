// A throttled refetch that also asks on a clock: what a big run's page uses for what its
// stream does not follow (a state filter's members, the tasks behind graph groups). The
// stream says when counts change, but equal counts can hide movement (as many tasks
// entered a state as left it), so while the run executes the read is simply repeated.

import { createRefetcher, type Refetcher, type RefetchOptions } from './refetch';

/** A refetcher that fetches at once and then every `intervalMs` (never two at a time), until closed. */
export function createPoller<T>(options: RefetchOptions<T>): Refetcher {
  const refetcher = createRefetcher(options);
  refetcher.request();
  const timer = setInterval(() => refetcher.request(), options.intervalMs);
  return {
    request: () => refetcher.request(),
    close() {
      clearInterval(timer);
      refetcher.close();
    },
  };
}
