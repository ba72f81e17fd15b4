// Starting points offered on the Submit page; they use only the worker's built-in handlers.

export const EXAMPLES: Record<string, unknown> = {
  diamond: {
    name: 'diamond',
    queue: 'default',
    tasks: [
      { id: 'plan', handler: 'echo', input: { topic: 'tides' } },
      { id: 'left', handler: 'sleep', input: { seconds: 1 }, depends_on: ['plan'] },
      { id: 'right', handler: 'sleep', input: { seconds: 1.5 }, depends_on: ['plan'] },
      { id: 'report', handler: 'echo', input: { title: 'report' }, depends_on: ['left', 'right'], trigger: 'all_done' },
    ],
  },
  'fan-out': {
    name: 'fan-out',
    tasks: [
      { id: 'plan', handler: 'noop' },
      ...Array.from({ length: 50 }, (_, i) => ({
        id: `item-${i}`,
        handler: 'sleep',
        input: { seconds: 0.5 + (i % 5) * 0.2 },
        depends_on: ['plan'],
      })),
      { id: 'reduce', handler: 'sum', depends_on: Array.from({ length: 50 }, (_, i) => `item-${i}`) },
    ],
  },
  retries: {
    name: 'retries',
    tasks: [
      { id: 'flaky', handler: 'fail', input: { message: 'transient', until_attempt: 3 }, retries: 3, retry_backoff_s: 0.5 },
      { id: 'after', handler: 'echo', input: { ok: true }, depends_on: ['flaky'] },
    ],
  },
};
