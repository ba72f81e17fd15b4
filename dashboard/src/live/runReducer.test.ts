import { describe, expect, it } from 'vitest';
import { doneCount, emptyRunView, MAX_ANSWER_CHARS, runReducer, type RunView } from './runReducer';
import { logEvent, run, runEvent, summary, task, taskEvent } from '../testing/fixtures';
import type { AnswerEvent, LiveEvent, ProgressEvent, Task } from '../api/types';

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
    expect(view.tasks.ids).toEqual(['a', 'b', 'c', 'd']);
    expect(view.summary?.counts.pending).toBe(4);
    expect(view.lastSeq).toBe(3);
    expect(view.specs.map((s) => s.id)).toEqual(['a', 'b', 'c', 'd']);
  });

  it('keeps the tasks it was given when they carry every field, and fills in the ones left out', () => {
    const full = task('a', { depends_on: [], progress: null });
    const bare = task('b');
    delete (bare as Partial<Task>).depends_on;
    delete (bare as Partial<Task>).progress;
    const view = runReducer(emptyRunView, { type: 'snapshot', run: run('r1', [full, bare]), seq: 1 });
    expect(view.tasks.get('a')).toBe(full);
    expect(view.tasks.get('b')).toMatchObject({ depends_on: [], progress: null });
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
    expect(view.tasks.ids).toEqual(['x']);
    expect(view.lastSeq).toBe(1);
  });
});

describe('runReducer events', () => {
  it('walks a task through its lifecycle with timings and counts', () => {
    let view = loaded();
    view = runReducer(view, events(taskEvent('r1', 4, 'a', 'queued', { at_ms: 100 })));
    view = runReducer(view, events(taskEvent('r1', 5, 'a', 'running', { at_ms: 120, worker_id: 'w1' })));
    view = runReducer(view, events(taskEvent('r1', 6, 'a', 'succeeded', { at_ms: 150 })));
    const a = view.tasks.get('a')!;
    expect(a).toMatchObject({ state: 'succeeded', worker_id: 'w1', queued_at_ms: 100, started_at_ms: 120, finished_at_ms: 150 });
    expect(view.summary?.counts).toMatchObject({ pending: 3, succeeded: 1, queued: 0, running: 0 });
    expect(doneCount(view.summary!.counts)).toBe(1);
    expect(view.lastSeq).toBe(6);
  });

  it('applies a coalesced burst in one step, keeping untouched tasks as they were', () => {
    const view = loaded();
    const next = runReducer(
      view,
      events(
        taskEvent('r1', 4, 'b', 'queued'),
        taskEvent('r1', 5, 'c', 'queued'),
        taskEvent('r1', 6, 'b', 'running'),
      ),
    );
    expect(next.tasks.get('b')!.state).toBe('running');
    expect(next.tasks.get('c')!.state).toBe('queued');
    expect(next.tasks.get('a')).toBe(view.tasks.get('a'));
    expect(view.tasks.get('b')!.state).toBe('pending');
    expect(next.summary?.counts).toMatchObject({ pending: 2, queued: 1, running: 1 });
  });

  it('drops events replayed by a resume (seq at or below the cursor)', () => {
    let view = runReducer(loaded(), events(taskEvent('r1', 4, 'a', 'queued'), taskEvent('r1', 5, 'a', 'running')));
    const replay = runReducer(view, events(taskEvent('r1', 4, 'a', 'queued')));
    expect(replay).toBe(view);
    view = runReducer(view, events(taskEvent('r1', 5, 'a', 'running'), taskEvent('r1', 6, 'a', 'succeeded')));
    expect(view.tasks.get('a')!.state).toBe('succeeded');
    expect(view.summary?.counts.running).toBe(0);
    expect(view.summary?.counts.succeeded).toBe(1);
  });

  it('ignores events of other runs and unknown states', () => {
    const view = loaded();
    const next = runReducer(view, events(taskEvent('r2', 9, 'a', 'running'), taskEvent('r1', 4, 'a', 'exploded')));
    expect(next.tasks.get('a')!.state).toBe('pending');
    expect(next.summary?.counts.pending).toBe(4);
  });

  it('records the error of a failed task and clears it when a retry succeeds', () => {
    const error = { kind: 'exception', error_type: 'ValueError', message: 'boom', traceback: 'Traceback…' };
    let view = runReducer(loaded(), events(taskEvent('r1', 4, 'a', 'failed', { error })));
    expect(view.tasks.get('a')!.error).toEqual(error);
    expect(view.summary?.counts.failed).toBe(1);
    view = runReducer(view, events(taskEvent('r1', 5, 'a', 'queued', { attempt: 2 }), taskEvent('r1', 6, 'a', 'succeeded', { attempt: 2 })));
    expect(view.tasks.get('a')).toMatchObject({ state: 'succeeded', attempt: 2, error: null });
  });

  it('moves the run state on run events and stamps its end', () => {
    let view = runReducer(loaded(), events(runEvent('r1', 4, 'cancelled', { at_ms: 777 })));
    expect(view.summary).toMatchObject({ state: 'cancelled', finished_at_ms: 777 });
    view = runReducer(view, events(runEvent('r1', 5, 'running', { at_ms: 800 })));
    expect(view.summary).toMatchObject({ state: 'running', finished_at_ms: null });
  });

  it('remembers who cancelled and retried the run, as the events name them', () => {
    let view = runReducer(loaded(), events(runEvent('r1', 4, 'cancelled', { at_ms: 1, by: 'ops' })));
    view = runReducer(view, events(runEvent('r1', 5, 'running', { at_ms: 2, by: 'ci' })));
    expect(view.summary?.history?.map((e) => [e.state, e.by])).toEqual([
      ['cancelled', 'ops'],
      ['running', 'ci'],
    ]);
  });

  it('shows progress of the current attempt only', () => {
    let view = runReducer(loaded(), events(taskEvent('r1', 4, 'a', 'running', { attempt: 2 })));
    const progress = (attempt: number, value: number): LiveEvent => ({
      kind: 'progress', run_id: 'r1', task_id: 'a', attempt, progress: value, message: `at ${value}`, at_ms: 1,
    });
    view = runReducer(view, events(progress(1, 0.9)));
    expect(view.tasks.get('a')!.progress).toBeNull();
    view = runReducer(view, events(progress(2, 0.4)));
    expect(view.tasks.get('a')).toMatchObject({ progress: 0.4, progress_message: 'at 0.4' });
    // Progress is not stored: it neither moves the cursor nor counts as a touch.
    expect(view.lastSeq).toBe(4);
  });

  it('bumps a task touch counter on its transitions and log lines', () => {
    let view = runReducer(loaded(), events(taskEvent('r1', 4, 'a', 'running')));
    expect(view.tasks.touched('a')).toBe(1);
    view = runReducer(view, events(logEvent('r1', 5, 'a', 'hi', { at_ms: 5 })));
    expect(view.tasks.touched('a')).toBe(2);
    expect(view.tasks.touched('b')).toBe(0);
  });

  it('resets timings when a retried run sends a task back to pending', () => {
    let view = runReducer(loaded(), events(taskEvent('r1', 4, 'a', 'queued'), taskEvent('r1', 5, 'a', 'running'), taskEvent('r1', 6, 'a', 'failed')));
    view = runReducer(view, events(taskEvent('r1', 7, 'a', 'pending')));
    expect(view.tasks.get('a')).toMatchObject({ state: 'pending', queued_at_ms: null, started_at_ms: null, finished_at_ms: null });
  });

  it('counts a task held for a decision as waiting, not finished', () => {
    let view = runReducer(loaded(), events(taskEvent('r1', 4, 'a', 'queued'), taskEvent('r1', 5, 'a', 'waiting', { at_ms: 50 })));
    expect(view.tasks.get('a')).toMatchObject({ state: 'waiting', finished_at_ms: null });
    expect(view.summary?.counts).toMatchObject({ waiting: 1, pending: 3, queued: 0 });
    expect(doneCount(view.summary!.counts)).toBe(0);
    view = runReducer(view, events(taskEvent('r1', 6, 'a', 'succeeded')));
    expect(view.summary?.counts).toMatchObject({ waiting: 0, succeeded: 1 });
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
    const view = runReducer(loaded(3), events(runEvent('r1', 4, 'cancelled', { at_ms: 1 })));
    const next = runReducer(view, { type: 'summary', run: summary('r1', { state: 'running', last_seq: 3 }) });
    expect(next.summary?.state).toBe('cancelled');
  });
});

/** plan spawns plan.0 and plan.1 at seq 5; report now waits on them too. */
function swarm(planState: Task['state'] = 'succeeded') {
  return run('r1', [
    task('plan', { handler: 'agent', agent: 'planner', state: planState, attempt: 1 }),
    task('report', { handler: 'agent', agent: 'writer', depends_on: ['plan'] }),
  ]);
}

function grown(lastSeq: number, fields: Partial<Task> = {}) {
  const spawned = run('r1', [
    task('plan', { handler: 'agent', agent: 'planner', state: 'succeeded', attempt: 1 }),
    task('report', { handler: 'agent', agent: 'writer', depends_on: ['plan', 'plan.0', 'plan.1'] }),
    task('plan.0', { handler: 'agent', agent: 'researcher', parent: 'plan', depends_on: ['plan'], ...fields }),
    task('plan.1', { handler: 'agent', agent: 'researcher', parent: 'plan', depends_on: ['plan'], ...fields }),
  ]);
  return { ...spawned, last_seq: lastSeq };
}

const delta = (taskId: string, attempt: number, text: string, fields: Partial<ProgressEvent> = {}): ProgressEvent => ({
  kind: 'progress', run_id: 'r1', task_id: taskId, attempt, progress: null, message: '', text_delta: text, at_ms: 1, ...fields,
});

describe('runReducer spawned tasks', () => {
  const start = () => runReducer(emptyRunView, { type: 'snapshot', run: swarm(), seq: 4 });

  it('keeps events of an unknown task aside and asks for a refetch once', () => {
    const view = runReducer(start(), events(taskEvent('r1', 5, 'plan.0', 'pending'), taskEvent('r1', 6, 'plan.1', 'pending')));
    expect(view.tasks.get('plan.0')).toBeUndefined();
    expect(view.orphans.map((e) => e.seq)).toEqual([5, 6]);
    expect(view.unknown).toEqual({ 'plan.0': 5, 'plan.1': 6 });
    expect(view.refetchWanted).toBe(2);
    expect(view.lastSeq).toBe(6);
    // Further events of a task already asked about ask nothing more.
    const later = runReducer(view, events(taskEvent('r1', 7, 'plan.0', 'queued')));
    expect(later.refetchWanted).toBe(2);
    expect(later.orphans).toHaveLength(3);
  });

  it('merges a refetch that is behind the socket, replaying what it missed', () => {
    let view = runReducer(
      start(),
      events(
        taskEvent('r1', 5, 'plan.0', 'pending'),
        taskEvent('r1', 6, 'plan.1', 'pending'),
        taskEvent('r1', 7, 'plan.0', 'queued', { at_ms: 700 }),
        taskEvent('r1', 8, 'plan.0', 'running', { at_ms: 800, worker_id: 'w1' }),
      ),
    );
    const specsBefore = view.specs;
    // The answer was taken at seq 6: it has the children, both still pending.
    view = runReducer(view, { type: 'refetched', run: grown(6) });
    expect(view.tasks.ids).toEqual(['plan', 'report', 'plan.0', 'plan.1']);
    expect(view.tasks.get('plan.0')).toMatchObject({ state: 'running', parent: 'plan', worker_id: 'w1', started_at_ms: 800 });
    expect(view.tasks.get('plan.1')!.state).toBe('pending');
    expect(view.tasks.get('report')!.depends_on).toEqual(['plan', 'plan.0', 'plan.1']);
    expect(view.summary).toMatchObject({ task_count: 4 });
    expect(view.summary?.counts).toMatchObject({ succeeded: 1, running: 1, pending: 2 });
    expect(view.specs).not.toBe(specsBefore);
    expect(view.specs.find((s) => s.id === 'plan.1')).toMatchObject({ parent: 'plan', agent: 'researcher' });
    expect(view.orphans).toEqual([]);
    expect(view.unknown).toEqual({});
    expect(view.lastSeq).toBe(8);
  });

  it('takes a refetch that is ahead of the socket as a snapshot', () => {
    let view = runReducer(start(), events(taskEvent('r1', 5, 'plan.0', 'pending')));
    view = runReducer(view, { type: 'refetched', run: grown(9, { state: 'queued' }) });
    expect(view.tasks.get('plan.1')!.state).toBe('queued');
    expect(view.lastSeq).toBe(9);
    expect(view.unknown).toEqual({});
  });

  it('asks again when the answer predates the spawn, and gives up on ids it should have had', () => {
    let view = runReducer(start(), events(taskEvent('r1', 5, 'plan.0', 'pending'), taskEvent('r1', 9, 'ghost', 'pending')));
    const asked = view.refetchWanted;
    // Taken at seq 4: before either appeared.
    view = runReducer(view, { type: 'refetched', run: { ...swarm(), last_seq: 4 } });
    expect(view.unknown).toEqual({ 'plan.0': 5, ghost: 9 });
    expect(view.refetchWanted).toBe(asked + 1);
    // Taken at seq 8 (the socket is at 9): plan.0 is there; ghost (seq 9) is still to come.
    view = runReducer(view, events(taskEvent('r1', 10, 'plan', 'succeeded')));
    view = runReducer(view, { type: 'refetched', run: grown(8) });
    expect(view.tasks.get('plan.0')).toBeDefined();
    expect(view.unknown).toEqual({ ghost: 9 });
    // Taken at seq 9 without it: it should have been there, so stop asking.
    view = runReducer(view, { type: 'refetched', run: grown(9) });
    expect(view.unknown).toEqual({});
    expect(view.orphans).toEqual([]);
  });

  it('keeps the spec array when a refetch brings nothing new', () => {
    const view = start();
    const again = runReducer(view, events(taskEvent('r1', 5, 'report', 'queued')));
    const merged = runReducer(again, { type: 'refetched', run: { ...swarm(), last_seq: 4 } });
    expect(merged.specs).toBe(view.specs);
    expect(merged.tasks.get('report')!.state).toBe('queued');
    expect(merged.tasks.get('plan')).toBe(again.tasks.get('plan'));
  });

  it('ignores a refetch of another run', () => {
    const view = start();
    expect(runReducer(view, { type: 'refetched', run: run('r2', [task('x')]) })).toBe(view);
  });
});

describe('runReducer streamed answers', () => {
  const start = () => runReducer(emptyRunView, { type: 'snapshot', run: swarm('running'), seq: 4 });

  it('concatenates the deltas of the current attempt', () => {
    let view = runReducer(start(), events(delta('plan', 1, 'Tides are '), delta('plan', 1, 'caused by')));
    view = runReducer(view, events(delta('plan', 1, ' the moon.')));
    expect(view.answers.plan).toEqual({ attempt: 1, text: 'Tides are caused by the moon.' });
  });

  it('starts over on a new attempt and ignores deltas of an older one', () => {
    let view = runReducer(start(), events(delta('plan', 1, 'first try')));
    view = runReducer(view, events(taskEvent('r1', 5, 'plan', 'queued', { attempt: 2 })));
    expect(view.answers.plan).toBeUndefined();
    view = runReducer(view, events(delta('plan', 1, 'late'), delta('plan', 2, 'second'), delta('plan', 2, ' try')));
    expect(view.answers.plan).toEqual({ attempt: 2, text: 'second try' });
  });

  it('drops the answer when the task finishes: its output takes over', () => {
    let view = runReducer(start(), events(delta('plan', 1, 'done soon')));
    view = runReducer(view, events(taskEvent('r1', 5, 'plan', 'succeeded')));
    expect(view.answers.plan).toBeUndefined();
  });

  it('keeps progress when a delta carries none, and takes it when it does', () => {
    let view = runReducer(start(), events({ kind: 'progress', run_id: 'r1', task_id: 'plan', attempt: 1, progress: 0.5, message: 'thinking', at_ms: 1 }));
    const before = view.tasks.get('plan');
    view = runReducer(view, events(delta('plan', 1, 'abc')));
    expect(view.tasks.get('plan')).toBe(before);
    view = runReducer(view, events(delta('plan', 1, 'd', { progress: 0.7 })));
    expect(view.tasks.get('plan')).toMatchObject({ progress: 0.7, progress_message: 'thinking' });
    expect(view.answers.plan!.text).toBe('abcd');
  });

  it('keeps deltas of a task not known yet', () => {
    const view = runReducer(start(), events(delta('plan.0', 1, 'early')));
    expect(view.answers['plan.0']).toEqual({ attempt: 1, text: 'early' });
  });

  it('keeps only the tail of a very long answer', () => {
    const chunk = 'x'.repeat(MAX_ANSWER_CHARS / 2);
    const view = runReducer(start(), events(delta('plan', 1, 'head'), delta('plan', 1, chunk), delta('plan', 1, chunk), delta('plan', 1, 'tail')));
    expect(view.answers.plan!.text).toHaveLength(MAX_ANSWER_CHARS);
    expect(view.answers.plan!.text.endsWith('tail')).toBe(true);
    expect(view.answers.plan!.truncated).toBe(true);
  });

  const answer = (taskId: string, attempt: number, text: string, dropped_bytes = 0): AnswerEvent => ({
    kind: 'answer', run_id: 'r1', task_id: taskId, attempt, text, dropped_bytes,
  });

  it('takes the text so far on rejoining, in place of its own, and grows it with the deltas that follow', () => {
    let view = runReducer(start(), events(delta('plan', 1, 'The moon')));
    // Reconnected: the server sends what the attempt streamed so far, then what follows.
    view = runReducer(view, events(answer('plan', 1, 'The moon pulls'), delta('plan', 1, ' the tides')));
    expect(view.answers.plan).toEqual({ attempt: 1, text: 'The moon pulls the tides' });
  });

  it('marks an answer whose beginning the server no longer had, and ignores one for a finished task', () => {
    let view = runReducer(start(), events(answer('plan', 1, 'ides.', 40)));
    expect(view.answers.plan).toEqual({ attempt: 1, text: 'ides.', truncated: true });
    view = runReducer(view, events(taskEvent('r1', 5, 'plan', 'succeeded'), answer('plan', 1, 'late')));
    expect(view.answers.plan).toBeUndefined();
  });
});

describe('runReducer usage', () => {
  const usage = (input_tokens: number, output_tokens: number, cost_usd: number) => ({ input_tokens, output_tokens, cost_usd });

  it('asks for a refetch when an agent task finishes, not when a plain one does', () => {
    const agents = runReducer(emptyRunView, { type: 'snapshot', run: swarm('running'), seq: 4 });
    expect(runReducer(agents, events(taskEvent('r1', 5, 'plan', 'succeeded'))).refetchWanted).toBe(1);
    expect(runReducer(agents, events(taskEvent('r1', 5, 'report', 'queued'))).refetchWanted).toBe(0);
    expect(runReducer(loaded(), events(taskEvent('r1', 4, 'a', 'succeeded'))).refetchWanted).toBe(0);
  });

  it('takes task and run usage from a refetch, never an older reading', () => {
    const view = runReducer(emptyRunView, {
      type: 'snapshot',
      run: run('r1', [task('plan', { agent: 'planner', usage: usage(100, 20, 0.002) })], { usage: usage(100, 20, 0.002) }),
      seq: 4,
    });
    const ahead = runReducer(view, events(taskEvent('r1', 5, 'plan', 'running')));
    const newer = runReducer(ahead, {
      type: 'refetched',
      run: { ...run('r1', [task('plan', { agent: 'planner', usage: usage(300, 60, 0.006) })], { usage: usage(300, 60, 0.006) }), last_seq: 4 },
    });
    expect(newer.tasks.get('plan')!.usage).toEqual(usage(300, 60, 0.006));
    expect(newer.tasks.get('plan')!.state).toBe('running');
    expect(newer.summary?.usage).toEqual(usage(300, 60, 0.006));
    const older = runReducer(newer, {
      type: 'refetched',
      run: { ...run('r1', [task('plan', { agent: 'planner', usage: usage(100, 20, 0.002) })], { usage: usage(100, 20, 0.002) }), last_seq: 4 },
    });
    expect(older.tasks.get('plan')!.usage).toEqual(usage(300, 60, 0.006));
    expect(older.summary?.usage).toEqual(usage(300, 60, 0.006));
  });

  it('reads a run whose tasks used nothing: usage is zero, never missing', () => {
    const view = loaded();
    expect(view.summary?.usage).toEqual(usage(0, 0, 0));
    expect(view.tasks.get('a')!.usage).toEqual(usage(0, 0, 0));
    expect(view.specs[0]).toEqual({ id: 'a', handler: 'echo', depends_on: [], parent: null, agent: null });
  });
});
