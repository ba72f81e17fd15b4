// What a group node shows: per-state counts of its members, their summed usage, and the
// one state that colours it — activity first, then anything unfinished, then the worst outcome.

import type { StateCounts, TaskState, Usage } from '../api/types';
import { zeroCounts } from '../live/runReducer';
import type { TaskLookup } from '../live/taskTable';
import { addUsage, ZERO_USAGE } from '../usage';

export function memberCounts(members: string[], tasks: TaskLookup): StateCounts {
  const counts = zeroCounts();
  for (const id of members) {
    const task = tasks.get(id);
    if (task) counts[task.state] += 1;
  }
  return counts;
}

export function memberUsage(members: string[], tasks: TaskLookup): Usage {
  let total = ZERO_USAGE;
  for (const id of members) total = addUsage(total, tasks.get(id)?.usage);
  return total;
}

const PRECEDENCE: TaskState[] = ['running', 'waiting', 'queued', 'ready', 'pending', 'failed', 'cancelled', 'skipped', 'succeeded'];

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
