// The run's tasks as a table: filter chips by state, a filter on the task id, and only
// the rows in view in the DOM, so it stays quick at 100,000 tasks while they change
// state hundreds of times a second. A click on a row opens the task's panel. A big run's
// stream follows only the rows on screen: the table says which they are (`onVisible`),
// and its state filter asks the server which tasks are in the chosen states.

import { memo, useCallback, useEffect, useMemo, useRef, useState, type Dispatch } from 'react';
import type { StateCounts, Task, TaskState } from '../api/types';
import { StateBadge } from '../components/StateBadge';
import { VirtualRows } from '../components/VirtualRows';
import { formatDuration, span } from '../format';
import type { RunAction } from '../live/runReducer';
import type { TaskTable } from '../live/taskTable';
import { StateChips } from './StateChips';
import { filterRows, idMatches } from './taskFilter';
import { countIn, useStateMembers } from './useStateMembers';

/** Pixels; must match `.task-row` in styles.css. */
const ROW_HEIGHT = 32;

interface Props {
  tasks: TaskTable;
  counts: StateCounts;
  /** While the tasks are still arriving: how many there will be. */
  loadingOf: number | null;
  selected: string | null;
  onSelect: (taskId: string) => void;
  now: number;
  /** A big run, followed by its visible rows: the state filter asks the server. */
  partial: { runId: string; dispatch: Dispatch<RunAction>; running: boolean } | null;
  /** Told the ids of the rows on screen whenever they change. */
  onVisible?: (ids: readonly string[]) => void;
}

export function RunTaskTable({ tasks, counts, loadingOf, selected, onSelect, now, partial, onVisible }: Props) {
  const [states, setStates] = useState<ReadonlySet<TaskState>>(() => new Set());
  const [text, setText] = useState('');
  // Every task is in the chosen states (a finished run's `succeeded`): nothing to ask the server.
  const everyTask = partial !== null && states.size > 0 && countIn(counts, states) === tasks.size;
  const members = useStateMembers({
    runId: partial?.runId ?? '',
    states,
    counts,
    enabled: partial !== null && !everyTask,
    live: partial?.running ?? false,
    tasks,
    dispatch: partial?.dispatch ?? noDispatch,
  });
  // The id match depends on the task set only, not on states: once per filter text.
  const candidates = useMemo(() => idMatches(tasks.ids, text), [tasks.ids, text]);
  const rows = useMemo(
    () => filterRows(tasks.values(), candidates, everyTask ? NO_STATES : states, members),
    [tasks, candidates, states, members, everyTask],
  );
  // Which rows are on screen, told as they scroll (no redraw of the table for it) and when the rows change.
  const range = useRef({ start: 0, end: 0 });
  const shownRows = useRef(rows);
  const report = useCallback(() => {
    const { start, end } = range.current;
    onVisible?.(shownRows.current.slice(start, end).map((t) => t.id));
  }, [onVisible]);
  const onRange = useCallback(
    (start: number, end: number) => {
      range.current = { start, end };
      report();
    },
    [report],
  );
  useEffect(() => {
    shownRows.current = rows;
    report();
  }, [rows, report]);
  const filterKey = `${[...states].join(',')}|${text.trim()}`;

  return (
    <div
      className="task-table"
      data-testid="task-table"
      data-rows={rows.length}
      data-total={tasks.size}
      data-filter={states.size > 0 && partial !== null && !everyTask ? (members === null ? 'reading' : 'server') : 'local'}
    >
      <div className="task-table-toolbar">
        <StateChips counts={counts} selected={states} onChange={setStates} />
        <input
          type="search"
          placeholder="Filter by task id"
          value={text}
          onChange={(e) => setText(e.target.value)}
          data-testid="task-filter-text"
        />
        {loadingOf !== null ? (
          <span className="muted" data-testid="run-loading">
            loading {tasks.size.toLocaleString()} of {loadingOf.toLocaleString()} tasks…
          </span>
        ) : (
          <span className="muted" data-testid="task-table-shown">
            {rows.length === tasks.size ? `${tasks.size.toLocaleString()} tasks` : `${rows.length.toLocaleString()} of ${tasks.size.toLocaleString()}`}
          </span>
        )}
      </div>
      <div className="task-row task-table-head" role="row">
        <span role="columnheader">Task</span>
        <span role="columnheader">State</span>
        <span role="columnheader">Handler</span>
        <span role="columnheader">Try</span>
        <span role="columnheader">Worker</span>
        <span role="columnheader">Ran for</span>
      </div>
      {rows.length === 0 ? (
        <div className="empty">{loadingOf !== null ? 'Loading tasks…' : 'No task matches.'}</div>
      ) : (
        <VirtualRows
          key={filterKey}
          count={rows.length}
          rowHeight={ROW_HEIGHT}
          className="task-table-body"
          testId="task-table-body"
          onRange={onRange}
          renderRow={(i) => {
            const task = rows[i]!;
            return <TaskRow key={task.id} task={task} selected={task.id === selected} onSelect={onSelect} now={now} />;
          }}
        />
      )}
    </div>
  );
}

const noDispatch: Dispatch<RunAction> = () => {};
const NO_STATES: ReadonlySet<TaskState> = new Set();

interface RowProps {
  task: Task;
  selected: boolean;
  onSelect: (taskId: string) => void;
  now: number;
}

/** Redrawn only when its task changes (or, while it runs, each second for its duration). */
const TaskRow = memo(
  function TaskRow({ task, selected, onSelect, now }: RowProps) {
    return (
      <div
        role="row"
        tabIndex={0}
        className={`task-row${selected ? ' selected' : ''}`}
        data-testid={`task-row-${task.id}`}
        data-state={task.state}
        title={task.error?.message ?? undefined}
        onClick={() => onSelect(task.id)}
        onKeyDown={(e) => {
          if (e.key === 'Enter' || e.key === ' ') {
            e.preventDefault();
            onSelect(task.id);
          }
        }}
      >
        <span role="cell" className="mono ellipsis">
          {task.id}
        </span>
        <span role="cell">
          <StateBadge state={task.state} />
        </span>
        <span role="cell" className="ellipsis">
          {task.agent ? <span className="node-agent">{task.agent}</span> : task.handler}
        </span>
        <span role="cell">{task.attempt || '—'}</span>
        <span role="cell" className="mono ellipsis">
          {task.worker_id ?? '—'}
        </span>
        <span role="cell">{formatDuration(span(task.started_at_ms, task.finished_at_ms, now))}</span>
      </div>
    );
  },
  // The clock only matters to a row whose duration is still running.
  (a, b) =>
    a.task === b.task &&
    a.selected === b.selected &&
    a.onSelect === b.onSelect &&
    (a.now === b.now || a.task.finished_at_ms !== null || a.task.started_at_ms === null),
);
