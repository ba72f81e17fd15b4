import { describe, expect, it } from 'vitest';
import type { Task, TaskPage, TaskPageQuery, TaskState } from '../api/types';
import { TaskTable } from '../live/taskTable';
import { task } from '../testing/fixtures';
import { fetchChanges, type ChangeRead } from './taskChanges';
import { nextSince } from './useGroupRows';

/** A run as the server keeps it: each row with the sequence of its last write. */
class FakeRun {
  seq = 0;
  rows = new Map<string, { task: Task; rev: number }>();
  /** Called before each page is answered, to change the run while a read is out. */
  beforePage: (page: number) => void = () => {};
  private pages = 0;

  write(id: string, state: TaskState, attempt = 1): void {
    this.seq += 1;
    this.rows.set(id, { task: task(id, { state, attempt }), rev: this.seq });
  }

  /** A write that is no event: the sequence does not move (a retry waiting its turn). */
  touch(id: string, state: TaskState): void {
    this.rows.set(id, { task: task(id, { state }), rev: this.seq });
  }

  full(): Map<string, Task> {
    return new Map([...this.rows].map(([id, r]) => [id, r.task]));
  }

  listTasks = async (_run: string, q: TaskPageQuery): Promise<TaskPage> => {
    this.beforePage(this.pages++);
    const cursor = this.seq;
    const ids = [...this.rows.keys()].sort();
    const from = q.after ? ids.indexOf(q.after) + 1 : 0;
    const page: Task[] = [];
    let i = from;
    for (; i < ids.length && page.length < 2; i++) {
      const row = this.rows.get(ids[i]!)!;
      if (q.since == null || row.rev >= q.since) page.push(row.task);
    }
    return { tasks: page, next_after: i < ids.length ? ids[i - 1]! : null, next_since: cursor };
  };
}

function merge(held: Map<string, Task>, read: ChangeRead): Map<string, Task> {
  for (const t of read.tasks) held.set(t.id, t);
  return held;
}

describe('fetchChanges', () => {
  it('reads everything once, then only what changed, and the merge equals a full read', async () => {
    const run = new FakeRun();
    for (const id of ['a', 'b', 'c', 'd', 'e', 'f', 'g']) run.write(id, 'pending', 0);
    const first = await fetchChanges('r', null, undefined, run);
    const held = merge(new Map(), first);
    expect(held).toEqual(run.full());

    // Retries, a failure, a cancel, a spawned task, and a write that is no event.
    run.write('a', 'failed', 1);
    run.write('b', 'running', 2);
    run.write('h', 'pending', 0);
    run.touch('c', 'ready');
    run.write('g', 'cancelled', 0);
    const second = await fetchChanges('r', first.cursor, undefined, run);
    expect(second.tasks.map((t) => t.id).sort()).toEqual(['a', 'b', 'c', 'g', 'h']);
    expect(merge(held, second)).toEqual(run.full());

    // Nothing changed: only the rows of the last commit come again.
    const quiet = await fetchChanges('r', second.cursor, undefined, run);
    expect(quiet.tasks.map((t) => t.id)).toEqual(['g']);
  });

  it('keeps the first page\'s cursor, so a row changed behind the read comes next time', async () => {
    const run = new FakeRun();
    for (const id of ['a', 'b', 'c', 'd', 'e']) run.write(id, 'queued');
    // While the third page is asked for, `a` (on the first page) finishes.
    run.beforePage = (page) => {
      if (page === 2) run.write('a', 'succeeded');
    };
    const first = await fetchChanges('r', null, undefined, run);
    const held = merge(new Map(), first);
    expect(held.get('a')?.state).toBe('queued');
    expect(first.cursor).toBe(5);
    run.beforePage = () => {};
    const next = await fetchChanges('r', first.cursor, undefined, run);
    expect(merge(held, next)).toEqual(run.full());
  });
});

describe('nextSince', () => {
  it('moves to the read\'s cursor unless the stream touched a row the read carried', () => {
    const before = TaskTable.of([task('a'), task('b')]);
    const after = before.edit();
    after.touch('b');
    const touched = after.done();
    expect(nextSince(3, [task('a')], 9, before, touched)).toBe(9);
    expect(nextSince(3, [task('a'), task('b')], 9, before, touched)).toBe(3);
    expect(nextSince(null, [task('b')], 9, before, touched)).toBeNull();
  });
});
