// A run's tasks, by id and in order, as an immutable value the run reducer can replace
// cheaply. A live batch changes a few hundred tasks of a run that may hold 100,000:
// copying a 100,000-key object for it costs about 60 ms, copying this table's row array
// about half a millisecond (the id index is shared until the task set changes). Each task
// also carries a touch counter, bumped by each of its stored events, which a task's
// detail view watches to know when to fetch again.

import type { Task } from '../api/types';

/** What reading tasks by id needs: a TaskTable, or a Map in tests. */
export interface TaskLookup {
  get(id: string): Task | undefined;
}

export class TaskTable implements TaskLookup {
  static readonly EMPTY = new TaskTable([], new Map(), [], []);

  private constructor(
    /** Task ids in order. */
    readonly ids: readonly string[],
    private readonly index: ReadonlyMap<string, number>,
    private readonly rows: readonly Task[],
    private readonly touches: readonly number[],
  ) {}

  /** A table of these tasks (a repeated id keeps its first place), with the touch counters `carry` had for them. */
  static of(tasks: readonly Task[], carry: TaskTable = TaskTable.EMPTY): TaskTable {
    const index = new Map<string, number>();
    const ids: string[] = [];
    const rows: Task[] = [];
    const touches: number[] = [];
    for (const task of tasks) {
      if (index.has(task.id)) continue;
      index.set(task.id, rows.length);
      ids.push(task.id);
      rows.push(task);
      touches.push(carry.touched(task.id));
    }
    return new TaskTable(ids, index, rows, touches);
  }

  get size(): number {
    return this.rows.length;
  }

  has(id: string): boolean {
    return this.index.has(id);
  }

  /** The task's position in the run's order. */
  indexOf(id: string): number | undefined {
    return this.index.get(id);
  }

  get(id: string): Task | undefined {
    const i = this.index.get(id);
    return i === undefined ? undefined : this.rows[i];
  }

  /** Tasks in order; read-only, shared with the table. */
  values(): readonly Task[] {
    return this.rows;
  }

  /** How many stored events (transitions, log lines) this task has had while watched. */
  touched(id: string): number {
    const i = this.index.get(id);
    return i === undefined ? 0 : this.touches[i]!;
  }

  /** A draft of the next table: rows are copied on the first change only. */
  edit(): TaskTableDraft {
    let rows: Task[] | null = null;
    let touches: number[] | null = null;
    return {
      get: (id) => {
        const i = this.index.get(id);
        return i === undefined ? undefined : (rows ?? this.rows)[i];
      },
      set: (task) => {
        const i = this.index.get(task.id);
        if (i === undefined) return;
        rows ??= this.rows.slice();
        rows[i] = task;
      },
      touch: (id) => {
        const i = this.index.get(id);
        if (i === undefined) return;
        touches ??= this.touches.slice();
        touches[i]! += 1;
      },
      done: () => (rows || touches ? new TaskTable(this.ids, this.index, rows ?? this.rows, touches ?? this.touches) : this),
    };
  }
}

/** Changes to a table, made one task at a time and taken as one new table. */
export interface TaskTableDraft {
  get(id: string): Task | undefined;
  /** Replaces a task the table has; one it does not have is ignored: the task set is fixed. */
  set(task: Task): void;
  touch(id: string): void;
  /** The new table, or the old one itself when nothing changed. */
  done(): TaskTable;
}
