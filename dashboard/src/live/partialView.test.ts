// The run reducer fed by a big run's partial stream: only the visible rows' events, the
// run's exact counts from the summaries the stream sends, rows read over REST.
import { describe, expect, it } from 'vitest';
import { emptyRunView, runReducer, type RunView } from './runReducer';
import { run, summary, task, taskEvent } from '../testing/fixtures';
import type { StateCounts } from '../api/types';

const counts = (fields: Partial<StateCounts>): StateCounts => ({
  pending: 0,
  ready: 0,
  queued: 0,
  running: 0,
  waiting: 0,
  succeeded: 0,
  failed: 0,
  cancelled: 0,
  skipped: 0,
  ...fields,
});

function loaded(): RunView {
  return runReducer(emptyRunView, { type: 'snapshot', run: run('r1', [task('a'), task('b'), task('c')]), seq: 10 });
}

describe('a partial stream', () => {
  it('moves the visible rows but takes the counts from the run summary only', () => {
    const view = runReducer(loaded(), { type: 'events', events: [taskEvent('r1', 11, 'a', 'queued')], partial: true });
    expect(view.tasks.get('a')?.state).toBe('queued');
    // Not a count moved by an event: other tasks moved too, unseen.
    expect(view.summary?.counts.pending).toBe(3);
    const later = runReducer(view, {
      type: 'events',
      events: [],
      run: summary('r1', { task_count: 3, counts: counts({ succeeded: 2, queued: 1 }), last_seq: 30 }),
      partial: true,
    });
    expect(later.summary?.counts).toEqual(counts({ succeeded: 2, queued: 1 }));
    expect(later.summary?.last_seq).toBe(30);
    expect(later.tasks.get('b')?.state).toBe('pending');
  });

  it('takes the run state from the summary and keeps the history it does not carry', () => {
    const base = loaded();
    const withHistory: RunView = { ...base, summary: { ...base.summary!, history: [taskEvent('r1', 1, 'x', 'running')] } };
    const done = runReducer(withHistory, {
      type: 'events',
      events: [],
      run: summary('r1', { state: 'succeeded', finished_at_ms: 5, task_count: 3, counts: counts({ succeeded: 3 }), last_seq: 40 }),
      partial: true,
    });
    expect(done.summary?.state).toBe('succeeded');
    expect(done.summary?.history).toHaveLength(1);
  });

  it('ignores a summary of another run', () => {
    const view = loaded();
    const next = runReducer(view, { type: 'events', events: [], run: summary('r2', { counts: counts({ failed: 9 }) }), partial: true });
    expect(next.summary?.counts.failed).toBe(0);
  });

  it('does not ask for a refetch of the whole run when an agent task finishes', () => {
    const agentRun = run('r1', [task('a', { agent: 'writer', state: 'running', attempt: 1 }), task('b')]);
    const view = runReducer(emptyRunView, { type: 'snapshot', run: agentRun, seq: 5 });
    const done = runReducer(view, { type: 'events', events: [taskEvent('r1', 6, 'a', 'succeeded')], partial: true });
    expect(done.tasks.get('a')?.state).toBe('succeeded');
    expect(done.refetchWanted).toBe(view.refetchWanted);
  });

  it('a fresh partial snapshot replaces the named tasks and the summary, and resumes from its seq', () => {
    const view = runReducer(loaded(), {
      type: 'partialSnapshot',
      run: summary('r1', { task_count: 3, counts: counts({ succeeded: 1, running: 2 }), last_seq: 50 }),
      tasks: [task('b', { state: 'succeeded', attempt: 1 }), task('zz', { state: 'running' })],
      seq: 50,
    });
    expect(view.tasks.get('b')?.state).toBe('succeeded');
    expect(view.tasks.has('zz')).toBe(false);
    expect(view.tasks.get('a')?.state).toBe('pending');
    expect(view.summary?.counts).toEqual(counts({ succeeded: 1, running: 2 }));
    expect(view.lastSeq).toBe(50);
    const stale = runReducer(view, { type: 'events', events: [taskEvent('r1', 49, 'a', 'queued')], partial: true });
    expect(stale.tasks.get('a')?.state).toBe('pending');
  });
});

describe('rows read over REST', () => {
  it('replace rows no event touched since the read was asked for', () => {
    const view = loaded();
    const asOf = view.tasks;
    const next = runReducer(view, { type: 'rows', tasks: [task('a', { state: 'succeeded' }), task('b', { state: 'running' })], asOf });
    expect(next.tasks.get('a')?.state).toBe('succeeded');
    expect(next.tasks.get('b')?.state).toBe('running');
    expect(next.summary?.counts).toEqual(view.summary?.counts);
  });

  it('leave a row alone when an event came after the read was asked for', () => {
    const view = loaded();
    const asOf = view.tasks;
    const moved = runReducer(view, { type: 'events', events: [taskEvent('r1', 11, 'a', 'failed')], partial: true });
    const next = runReducer(moved, { type: 'rows', tasks: [task('a', { state: 'running' }), task('c', { state: 'queued' })], asOf });
    expect(next.tasks.get('a')?.state).toBe('failed');
    expect(next.tasks.get('c')?.state).toBe('queued');
  });

  it('keep the same objects (and view) when nothing shown changed, and skip unknown tasks', () => {
    const view = loaded();
    const same = runReducer(view, { type: 'rows', tasks: [task('a'), task('nope', { state: 'failed' })], asOf: view.tasks });
    expect(same).toBe(view);
  });
});

describe('tasks spawned during a big run', () => {
  it('asks for the run again when the summary counts more tasks than we hold', () => {
    const view = loaded();
    const same = runReducer(view, {
      type: 'events',
      events: [],
      run: summary('r1', { task_count: 3, counts: counts({ running: 3 }), last_seq: 20 }),
      partial: true,
    });
    expect(same.refetchWanted).toBe(view.refetchWanted);
    const grew = runReducer(same, {
      type: 'events',
      events: [],
      run: summary('r1', { task_count: 5, counts: counts({ running: 3, pending: 2 }), last_seq: 21 }),
      partial: true,
    });
    expect(grew.refetchWanted).toBe(view.refetchWanted + 1);
    // The next summary with the same count asks nothing more: one read brings them.
    const again = runReducer(grew, {
      type: 'events',
      events: [],
      run: summary('r1', { task_count: 5, counts: counts({ running: 5 }), last_seq: 22 }),
      partial: true,
    });
    expect(again.refetchWanted).toBe(grew.refetchWanted);
  });

  it('asks for the run again when a fresh partial stream starts with more tasks', () => {
    const view = loaded();
    const next = runReducer(view, {
      type: 'partialSnapshot',
      run: summary('r1', { task_count: 4, counts: counts({ pending: 4 }), last_seq: 12 }),
      tasks: [],
      seq: 12,
    });
    expect(next.refetchWanted).toBe(view.refetchWanted + 1);
  });

  it('shows the spawned tasks once the run is read again, keeping the rows it has', () => {
    const view = runReducer(loaded(), {
      type: 'events',
      events: [taskEvent('r1', 13, 'a', 'running')],
      run: summary('r1', { task_count: 5, counts: counts({ running: 1, pending: 4 }), last_seq: 14 }),
      partial: true,
    });
    const read = run('r1', [task('a'), task('a.0', { parent: 'a' }), task('a.1', { parent: 'a' }), task('b'), task('c')], { last_seq: 12 });
    const next = runReducer(view, { type: 'refetched', run: read });
    expect(next.tasks.ids).toEqual(['a', 'a.0', 'a.1', 'b', 'c']);
    expect(next.tasks.get('a')?.state).toBe('running');
    expect(next.summary?.task_count).toBe(5);
  });
});
