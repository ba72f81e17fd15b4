import { TASK_STATES, type StateCounts } from '../api/types';

/** Stacked bar of task states, widths proportional to counts. */
export function CountsBar({ counts, total }: { counts: StateCounts; total: number }) {
  const title = TASK_STATES.filter((s) => counts[s] > 0)
    .map((s) => `${s}: ${counts[s]}`)
    .join(', ');
  return (
    <div className="counts-bar" title={title}>
      {total > 0 &&
        TASK_STATES.map((state) =>
          counts[state] > 0 ? (
            <div key={state} className={`fill-${state}`} style={{ width: `${(100 * counts[state]) / total}%` }} />
          ) : null,
        )}
    </div>
  );
}
