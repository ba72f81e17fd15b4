import { describe, expect, it } from 'vitest';
import {
  HISTORY_MAX_SAMPLES,
  HISTORY_WINDOW_MS,
  appendSample,
  emptyOverview,
  overviewReducer,
  sortRuns,
  type Overview,
} from './overviewReducer';
import { queue, runEvent, summary, taskEvent, worker } from '../testing/fixtures';

function loaded(): Overview {
  return overviewReducer(emptyOverview, {
    type: 'snapshot',
    at_ms: 0,
    frame: {
      type: 'snapshot',
      runs: [summary('r1', { last_seq: 5 })],
      workers: [worker('w1')],
      queues: [queue('default', { depth: 3 })],
      seq: 10,
    },
  });
}

describe('overviewReducer', () => {
  it('loads a snapshot with a first queue sample', () => {
    const view = loaded();
    expect(view.loaded).toBe(true);
    expect(Object.keys(view.runs)).toEqual(['r1']);
    expect(view.workers.w1?.state).toBe('running');
    expect(view.history).toHaveLength(1);
    expect(view.history[0]!.queues.default?.depth).toBe(3);
  });

  it('adds created runs and replaces updated ones unless the update is stale', () => {
    let view = overviewReducer(loaded(), {
      type: 'events',
      at_ms: 1,
      events: [
        { kind: 'run_created', seq: 11, run: summary('r2', { created_at_ms: 2_000 }) },
        { kind: 'run_updated', seq: 12, run: summary('r1', { state: 'succeeded', last_seq: 9 }) },
      ],
    });
    expect(view.runs.r2).toBeDefined();
    expect(view.runs.r1?.state).toBe('succeeded');
    view = overviewReducer(view, {
      type: 'events',
      at_ms: 2,
      events: [{ kind: 'run_updated', seq: 13, run: summary('r1', { state: 'running', last_seq: 7 }) }],
    });
    expect(view.runs.r1?.state).toBe('succeeded');
  });

  it('follows run transitions carried as stored run events', () => {
    const view = overviewReducer(loaded(), {
      type: 'events',
      at_ms: 1,
      events: [runEvent('r1', 6, 'failed', { at_ms: 99 })],
    });
    expect(view.runs.r1).toMatchObject({ state: 'failed', finished_at_ms: 99 });
  });

  it('upserts workers and records queue samples from events', () => {
    const view = overviewReducer(loaded(), {
      type: 'events',
      at_ms: 5_000,
      events: [
        { kind: 'worker', seq: 2, worker: worker('w1', { state: 'draining', in_flight: 3 }) },
        { kind: 'worker', seq: 3, worker: worker('w2') },
        { kind: 'queues', seq: 4, queues: [queue('default', { depth: 7, running: 2 })] },
      ],
    });
    expect(view.workers.w1).toMatchObject({ state: 'draining', in_flight: 3 });
    expect(view.workers.w2).toBeDefined();
    expect(view.queues[0]?.depth).toBe(7);
    expect(view.history.map((s) => s.queues.default?.depth)).toEqual([3, 7]);
  });

  it('returns the same state for events it does not track', () => {
    const view = loaded();
    const next = overviewReducer(view, {
      type: 'events',
      at_ms: 1,
      events: [taskEvent('r1', 3, 'a', 'running', { at_ms: 1 })],
    });
    expect(next).toBe(view);
  });

  it('merges a REST page without overwriting newer live news', () => {
    const view = overviewReducer(loaded(), {
      type: 'runs',
      runs: [summary('r1', { state: 'running', last_seq: 1 }), summary('r0', { created_at_ms: 10 })],
    });
    expect(view.runs.r1?.last_seq).toBe(5);
    expect(view.runs.r0).toBeDefined();
  });

  it('replaces the worker list from a REST answer', () => {
    const view = overviewReducer(loaded(), { type: 'workers', workers: [worker('w9')] });
    expect(Object.keys(view.workers)).toEqual(['w9']);
  });
});

describe('queue history', () => {
  it('coalesces samples closer than the resolution', () => {
    let history = appendSample([], [queue('q', { depth: 1 })], 0);
    history = appendSample(history, [queue('q', { depth: 2 })], 400);
    expect(history).toHaveLength(1);
    expect(history[0]!.queues.q?.depth).toBe(2);
  });

  it('drops samples outside the window and beyond the cap', () => {
    let history = appendSample([], [queue('q')], 0);
    history = appendSample(history, [queue('q')], HISTORY_WINDOW_MS + 10_000);
    expect(history).toHaveLength(1);
    for (let i = 0; i < HISTORY_MAX_SAMPLES + 50; i++) history = appendSample(history, [queue('q')], HISTORY_WINDOW_MS + 20_000 + i * 1_000);
    expect(history.length).toBeLessThanOrEqual(HISTORY_MAX_SAMPLES);
  });
});

describe('sortRuns', () => {
  it('puts the newest first', () => {
    const sorted = sortRuns([summary('a', { created_at_ms: 1 }), summary('b', { created_at_ms: 3 }), summary('c', { created_at_ms: 2 })]);
    expect(sorted.map((r) => r.id)).toEqual(['b', 'c', 'a']);
  });
});
