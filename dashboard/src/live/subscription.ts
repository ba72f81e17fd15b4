// What a run page asks the server's stream for (issue #15). A small run is followed in
// full (`detail=tasks`). A big one would send thousands of task events a second that
// nobody can read: the page asks for the tasks on screen (`tasks=ID,…`, which also
// brings the run's state and, a few times a second, its counts), or, with no rows on
// screen (the graph view), for the summary only (`detail=summary`). As the user scrolls,
// the visible rows change and the page subscribes again.

/** Runs with more tasks than this are followed by summary plus the visible rows. */
export const BIG_RUN_TASKS = 2_000;
/** Most task ids the server accepts in one `tasks=` filter. */
export const MAX_FILTER_TASKS = 1_000;

export type Subscription = { detail: 'tasks' } | { detail: 'summary' } | { detail: 'only'; tasks: readonly string[] };

/** The subscription for a run of `taskCount` tasks with `visible` rows on screen. */
export function subscriptionFor(taskCount: number, visible: readonly string[]): Subscription {
  if (taskCount <= BIG_RUN_TASKS) return { detail: 'tasks' };
  const ids = [...new Set(visible)].slice(0, MAX_FILTER_TASKS).sort();
  return ids.length === 0 ? { detail: 'summary' } : { detail: 'only', tasks: ids };
}

/** A string that changes exactly when the subscription does: a dependency for re-subscribing. */
export function subscriptionKey(s: Subscription): string {
  return s.detail === 'only' ? `only:${s.tasks.join(',')}` : s.detail;
}

/** The query parameters that ask for `s` (none for the server's default, full detail). */
export function subscriptionParams(s: Subscription): Record<string, string> {
  switch (s.detail) {
    case 'tasks':
      return {};
    case 'summary':
      return { detail: 'summary' };
    case 'only':
      return { tasks: s.tasks.join(',') };
  }
}
