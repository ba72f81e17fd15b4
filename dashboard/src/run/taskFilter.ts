// The task table's filter: states picked from chips and a piece of the task id. Split in
// two so that live updates stay cheap on a 100,000-task run: the id match only changes
// with the text or the task set, so it is computed once for them; each update then only
// re-checks the states of the candidates. With no filter, the table's own row array is
// the answer: nothing is copied.

import type { Task, TaskState } from '../api/types';

/** Positions of the tasks whose id contains `text` (any case), or null when every task does. */
export function idMatches(ids: readonly string[], text: string): number[] | null {
  const needle = text.trim().toLowerCase();
  if (!needle) return null;
  const found: number[] = [];
  for (let i = 0; i < ids.length; i++) if (ids[i]!.toLowerCase().includes(needle)) found.push(i);
  return found;
}

/**
 * The rows to show: the candidates (all when null) in one of `states` (any when empty).
 * `members`, when given with states, are the tasks the server says are in them: a big
 * run's rows off screen may hold old states, so a row must be in both.
 */
export function filterRows(
  rows: readonly Task[],
  candidates: readonly number[] | null,
  states: ReadonlySet<TaskState>,
  members: ReadonlySet<string> | null = null,
): readonly Task[] {
  if (candidates === null && states.size === 0) return rows;
  const shown: Task[] = [];
  const passes = (task: Task) => states.size === 0 || (states.has(task.state) && (members === null || members.has(task.id)));
  if (candidates === null) {
    for (const task of rows) if (passes(task)) shown.push(task);
    return shown;
  }
  for (const i of candidates) {
    const task = rows[i];
    if (task && passes(task)) shown.push(task);
  }
  return shown;
}
