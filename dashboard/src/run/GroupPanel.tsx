// Side panel for a collapsed fan-out or a group of spawned tasks: per-state counts, summed
// usage and a filterable member list, each member one click away from its own task panel.
// A spawned group can be expanded into its tasks from here.

import { useMemo, useState } from 'react';
import { TASK_STATES, type TaskState } from '../api/types';
import { CountsBar } from '../components/CountsBar';
import { StateBadge } from '../components/StateBadge';
import { memberCounts, memberUsage } from '../graph/groupState';
import type { TaskLookup } from '../live/taskTable';
import { formatUsageLong, hasUsage } from '../usage';

const LIST_LIMIT = 300;

interface Props {
  label: string;
  members: string[];
  tasks: TaskLookup;
  /** What spawned the members, for a group of spawned tasks. */
  spawnedBy: string | null;
  /** Draws the members one by one; null for groups that only fold with the global toggle. */
  onExpand: (() => void) | null;
  onClose: () => void;
  onSelectTask: (taskId: string) => void;
}

export function GroupPanel({ label, members, tasks, spawnedBy, onExpand, onClose, onSelectTask }: Props) {
  const [filter, setFilter] = useState<TaskState | ''>('');
  const [search, setSearch] = useState('');
  const counts = useMemo(() => memberCounts(members, tasks), [members, tasks]);
  const usage = useMemo(() => memberUsage(members, tasks), [members, tasks]);
  const shown = useMemo(() => {
    const needle = search.trim().toLowerCase();
    return members.filter((id) => (!filter || tasks.get(id)?.state === filter) && (!needle || id.toLowerCase().includes(needle)));
  }, [members, tasks, filter, search]);

  return (
    <aside className="side-panel" data-testid="group-panel" data-parent={spawnedBy ?? undefined}>
      <header className="panel-header">
        <div>
          <h2 className="mono">{label}</h2>
          <div className="muted">
            {spawnedBy ? `${members.length} tasks spawned by ${spawnedBy}` : `${members.length} tasks with the same dependencies`}
          </div>
          {hasUsage(usage) && <div data-testid="group-usage">{formatUsageLong(usage)}</div>}
          {onExpand && (
            <button type="button" className="link-button" onClick={onExpand} data-testid="expand-group">
              Show each task in the graph
            </button>
          )}
        </div>
        <button type="button" className="icon-button" onClick={onClose} aria-label="Close">
          ×
        </button>
      </header>
      <CountsBar counts={counts} total={members.length} />
      <div className="state-chips">
        {TASK_STATES.filter((s) => counts[s] > 0).map((s) => (
          <button
            key={s}
            type="button"
            className={`chip${filter === s ? ' active' : ''}`}
            onClick={() => setFilter(filter === s ? '' : s)}
          >
            <StateBadge state={s} /> {counts[s]}
          </button>
        ))}
      </div>
      <input type="search" placeholder="Filter by task id" value={search} onChange={(e) => setSearch(e.target.value)} />
      <ul className="member-list">
        {shown.slice(0, LIST_LIMIT).map((id) => (
          <li key={id}>
            <button type="button" className="link-button mono" onClick={() => onSelectTask(id)} data-testid={`group-member-${id}`}>
              {id}
            </button>
            <StateBadge state={tasks.get(id)?.state ?? 'pending'} />
          </li>
        ))}
      </ul>
      {shown.length > LIST_LIMIT && (
        <div className="muted">
          showing {LIST_LIMIT} of {shown.length}; filter to narrow down
        </div>
      )}
    </aside>
  );
}
