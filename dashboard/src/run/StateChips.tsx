// The task table's state filter: a chip per task state with its live count. Several can
// be on at once (failed and skipped, say); none on means every state.

import { TASK_STATES, type StateCounts, type TaskState } from '../api/types';

interface Props {
  counts: StateCounts;
  selected: ReadonlySet<TaskState>;
  onChange: (next: ReadonlySet<TaskState>) => void;
}

export function StateChips({ counts, selected, onChange }: Props) {
  const toggle = (state: TaskState) => {
    const next = new Set(selected);
    if (next.has(state)) next.delete(state);
    else next.add(state);
    onChange(next);
  };
  return (
    <div className="state-chips" role="group" aria-label="Filter by state">
      <button
        type="button"
        className={`chip${selected.size === 0 ? ' active' : ''}`}
        aria-pressed={selected.size === 0}
        onClick={() => onChange(new Set())}
        data-testid="task-filter-all"
      >
        all
      </button>
      {TASK_STATES.map((state) => {
        // Servers that predate a state leave it out of their counts.
        const count = counts[state] ?? 0;
        return (
          <button
            key={state}
            type="button"
            className={`chip state-chip state-${state}${selected.has(state) ? ' active' : ''}${count === 0 ? ' empty' : ''}`}
            aria-pressed={selected.has(state)}
            onClick={() => toggle(state)}
            data-testid={`task-filter-${state}`}
            data-count={count}
          >
            {state} <b>{count.toLocaleString()}</b>
          </button>
        );
      })}
    </div>
  );
}
