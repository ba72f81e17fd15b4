// What a group node shows: per-state counts of its members, and the one state that
// colours it — activity first, then anything unfinished, then the worst outcome.

import type { StateCounts, Task, TaskState } from '../api/types';
import { zeroCounts } from '../live/runReducer';

export function memberCounts(members: string[], tasks: Record<string, Task>): StateCounts {
  const counts = zeroCounts();
  for (const id of members) {
    const task = tasks[id];
    if (task) counts[task.state] += 1;
  }
  return counts;
}

const PRECEDENCE: TaskState[] = ['running', 'queued', 'ready', 'pending', 'failed', 'cancelled', 'skipped', 'succeeded'];

export function dominantState(counts: StateCounts): TaskState {
  const total = PRECEDENCE.reduce((sum, s) => sum + counts[s], 0);
  if (total === 0) return 'pending';
  // A group fully skipped reads as skipped; a few skipped beside successes reads as succeeded.
  if (counts.skipped === total) return 'skipped';
  for (const state of PRECEDENCE) {
    if (state === 'skipped') continue;
    if (counts[state] > 0) return state;
  }
  return 'succeeded';
}
