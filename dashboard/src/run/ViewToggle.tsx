// Graph or table: how the run page shows a run's tasks.

export type RunViewMode = 'graph' | 'table';

/** Runs with more tasks than this open as a table; their graph is offered grouped, on demand. */
export const TABLE_FIRST_TASKS = 2_000;

export function defaultViewMode(taskCount: number): RunViewMode {
  return taskCount > TABLE_FIRST_TASKS ? 'table' : 'graph';
}

export function ViewToggle({ mode, onChange }: { mode: RunViewMode; onChange: (mode: RunViewMode) => void }) {
  return (
    <div className="view-toggle" role="group" aria-label="Show tasks as">
      {(['graph', 'table'] as const).map((m) => (
        <button
          key={m}
          type="button"
          className={mode === m ? 'active' : undefined}
          aria-pressed={mode === m}
          onClick={() => onChange(m)}
          data-testid={`view-${m}`}
        >
          {m === 'graph' ? 'Graph' : 'Table'}
        </button>
      ))}
    </div>
  );
}
