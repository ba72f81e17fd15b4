// The run's tasks as a table: filter chips by state, a filter on the task id, and only
// the rows in view in the DOM, so it stays quick at 100,000 tasks while they change
// state hundreds of times a second. A click on a row opens the task's panel.

import { memo, useMemo, useState } from 'react';
import type { StateCounts, Task, TaskState } from '../api/types';
import { StateBadge } from '../components/StateBadge';
import { VirtualRows } from '../components/VirtualRows';
import { formatDuration, span } from '../format';
import type { TaskTable } from '../live/taskTable';
import { StateChips } from './StateChips';
import { filterRows, idMatches } from './taskFilter';

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
}

export function RunTaskTable({ tasks, counts, loadingOf, selected, onSelect, now }: Props) {
  const [states, setStates] = useState<ReadonlySet<TaskState>>(() => new Set());
  const [text, setText] = useState('');
  // The id match depends on the task set only, not on states: once per filter text.
  const candidates = useMemo(() => idMatches(tasks.ids, text), [tasks.ids, text]);
  const rows = useMemo(() => filterRows(tasks.values(), candidates, states), [tasks, candidates, states]);
  const filterKey = `${[...states].join(',')}|${text.trim()}`;

  return (
    <div className="task-table" data-testid="task-table" data-rows={rows.length} data-total={tasks.size}>
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
          renderRow={(i) => {
            const task = rows[i]!;
            return <TaskRow key={task.id} task={task} selected={task.id === selected} onSelect={onSelect} now={now} />;
          }}
        />
      )}
    </div>
  );
}

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
