import { describe, expect, it } from 'vitest';
import { doneCount, emptyRunView, runReducer, type RunView } from './runReducer';
import { run, summary, task, taskEvent } from '../testing/fixtures';
import type { LiveEvent } from '../api/types';

const diamond = () =>
  run('r1', [
    task('a'),
    task('b', { depends_on: ['a'] }),
    task('c', { depends_on: ['a'] }),
    task('d', { depends_on: ['b', 'c'] }),
  ]);

function loaded(seq = 3): RunView {
  return runReducer(emptyRunView, { type: 'snapshot', run: diamond(), seq });
}

const events = (...list: LiveEvent[]) => ({ type: 'events' as const, events: list });

describe('runReducer snapshot', () => {
  it('indexes tasks, keeps submission order and counts states', () => {
    const view = loaded();
    expect(view.order).toEqual(['a', 'b', 'c', 'd']);
    expect(view.summary?.counts.pending).toBe(4);
    expect(view.lastSeq).toBe(3);
    expect(view.specs.map((s) => s.id)).toEqual(['a', 'b', 'c', 'd']);
  });

  it('ignores a snapshot older than the events already applied', () => {
    const view = runReducer(loaded(3), events(taskEvent('r1', 4, 'a', 'queued')));
    const stale = runReducer(view, { type: 'snapshot', run: diamond(), seq: 2 });
    expect(stale).toBe(view);
  });

  it('keeps the spec array by reference when a resync brings the same DAG', () => {
    const view = loaded(3);
    const again = runReducer(view, { type: 'snapshot', run: diamond(), seq: 9 });
    expect(again.specs).toBe(view.specs);
    expect(again.lastSeq).toBe(9);
  });

  it('starts over when a snapshot of another run arrives', () => {
    const other = run('r2', [task('x')]);
    const view = runReducer(loaded(50), { type: 'snapshot', run: other, seq: 1 });
    expect(view.order).toEqual(['x']);
    expect(view.lastSeq).toBe(1);
  });
});

describe('runReducer events', () => {
  it('walks a task through its lifecycle with timings and counts', () => {
    let view = loaded();
    view = runReducer(view, events(taskEvent('r1', 4, 'a', 'queued', { at_ms: 100 })));
    view = runReducer(view, events(taskEvent('r1', 5, 'a', 'running', { at_ms: 120, worker_id: 'w1' })));
    view = runReducer(view, events(taskEvent('r1', 6, 'a', 'succeeded', { at_ms: 150 })));
    const a = view.tasks.a!;
    expect(a).toMatchObject({ state: 'succeeded', worker_id: 'w1', queued_at_ms: 100, started_at_ms: 120, finished_at_ms: 150 });
    expect(view.summary?.counts).toMatchObject({ pending: 3, succeeded: 1, queued: 0, running: 0 });
    expect(doneCount(view.summary!.counts)).toBe(1);
    expect(view.lastSeq).toBe(6);
  });

  it('applies a coalesced burst in one step and copies the task map once', () => {
    const view = loaded();
    const next = runReducer(
      view,
      events(
        taskEvent('r1', 4, 'b', 'queued'),
        taskEvent('r1', 5, 'c', 'queued'),
        taskEvent('r1', 6, 'b', 'running'),
      ),
    );
    expect(next.tasks.b!.state).toBe('running');
    expect(next.tasks.c!.state).toBe('queued');
    expect(next.tasks.a).toBe(view.tasks.a);
    expect(view.tasks.b!.state).toBe('pending');
    expect(next.summary?.counts).toMatchObject({ pending: 2, queued: 1, running: 1 });
  });

  it('drops events replayed by a resume (seq at or below the cursor)', () => {
    let view = runReducer(loaded(), events(taskEvent('r1', 4, 'a', 'queued'), taskEvent('r1', 5, 'a', 'running')));
    const replay = runReducer(view, events(taskEvent('r1', 4, 'a', 'queued')));
    expect(replay).toBe(view);
    view = runReducer(view, events(taskEvent('r1', 5, 'a', 'running'), taskEvent('r1', 6, 'a', 'succeeded')));
    expect(view.tasks.a!.state).toBe('succeeded');
    expect(view.summary?.counts.running).toBe(0);
    expect(view.summary?.counts.succeeded).toBe(1);
  });

  it('ignores events of other runs and unknown states', () => {
    const view = loaded();
    const next = runReducer(view, events(taskEvent('r2', 9, 'a', 'running'), taskEvent('r1', 4, 'a', 'exploded')));
    expect(next.tasks.a!.state).toBe('pending');
    expect(next.summary?.counts.pending).toBe(4);
  });

  it('records the error of a failed task and clears it when a retry succeeds', () => {
    const error = { kind: 'exception', error_type: 'ValueError', message: 'boom', traceback: 'Traceback…' };
    let view = runReducer(loaded(), events(taskEvent('r1', 4, 'a', 'failed', { error })));
    expect(view.tasks.a!.error).toEqual(error);
    expect(view.summary?.counts.failed).toBe(1);
    view = runReducer(view, events(taskEvent('r1', 5, 'a', 'queued', { attempt: 2 }), taskEvent('r1', 6, 'a', 'succeeded', { attempt: 2 })));
    expect(view.tasks.a).toMatchObject({ state: 'succeeded', attempt: 2, error: null });
  });

  it('moves the run state on run events and stamps its end', () => {
    let view = runReducer(loaded(), events({ seq: 4, run_id: 'r1', task_id: null, kind: 'run', state: 'cancelled', at_ms: 777 }));
    expect(view.summary).toMatchObject({ state: 'cancelled', finished_at_ms: 777 });
    view = runReducer(view, events({ seq: 5, run_id: 'r1', task_id: null, kind: 'run', state: 'running', at_ms: 800 }));
    expect(view.summary).toMatchObject({ state: 'running', finished_at_ms: null });
  });

  it('shows progress of the current attempt only', () => {
    let view = runReducer(loaded(), events(taskEvent('r1', 4, 'a', 'running', { attempt: 2 })));
    const progress = (attempt: number, value: number): LiveEvent => ({
      kind: 'progress', run_id: 'r1', task_id: 'a', attempt, progress: value, message: `at ${value}`, at_ms: 1,
    });
    view = runReducer(view, events(progress(1, 0.9)));
    expect(view.tasks.a!.progress).toBeNull();
    view = runReducer(view, events(progress(2, 0.4)));
    expect(view.tasks.a).toMatchObject({ progress: 0.4, progress_message: 'at 0.4' });
    // Progress is not stored: it neither moves the cursor nor counts as a touch.
    expect(view.lastSeq).toBe(4);
  });

  it('bumps a task touch counter on its transitions and log lines', () => {
    let view = runReducer(loaded(), events(taskEvent('r1', 4, 'a', 'running')));
    expect(view.touched.a).toBe(1);
    view = runReducer(view, events({ seq: 5, run_id: 'r1', task_id: 'a', kind: 'log', level: 'info', message: 'hi', at_ms: 5 }));
    expect(view.touched.a).toBe(2);
    expect(view.touched.b).toBeUndefined();
  });

  it('resets timings when a retried run sends a task back to pending', () => {
    let view = runReducer(loaded(), events(taskEvent('r1', 4, 'a', 'queued'), taskEvent('r1', 5, 'a', 'running'), taskEvent('r1', 6, 'a', 'failed')));
    view = runReducer(view, events(taskEvent('r1', 7, 'a', 'pending')));
    expect(view.tasks.a).toMatchObject({ state: 'pending', queued_at_ms: null, started_at_ms: null, finished_at_ms: null });
  });

  it('does nothing before a snapshot', () => {
    expect(runReducer(emptyRunView, events(taskEvent('r1', 1, 'a', 'queued')))).toBe(emptyRunView);
  });
});

describe('runReducer summary', () => {
  it('takes the state of a cancel answer that is at least as new as our events', () => {
    const view = runReducer(loaded(3), { type: 'summary', run: summary('r1', { state: 'cancelled', finished_at_ms: 50, last_seq: 3 }) });
    expect(view.summary).toMatchObject({ state: 'cancelled', finished_at_ms: 50 });
    expect(view.summary?.counts.pending).toBe(4);
  });

  it('ignores an answer older than the events already applied', () => {
    const view = runReducer(loaded(3), events({ seq: 4, run_id: 'r1', task_id: null, kind: 'run', state: 'cancelled', at_ms: 1 }));
    const next = runReducer(view, { type: 'summary', run: summary('r1', { state: 'running', last_seq: 3 }) });
    expect(next.summary?.state).toBe('cancelled');
  });
});
