import { useCallback, useMemo } from 'react';
import { api } from '../api/client';
import type { Worker } from '../api/types';
import { useNow } from '../clock';
import { LiveIndicator } from '../components/LiveIndicator';
import { StateBadge } from '../components/StateBadge';
import { formatAgo } from '../format';
import { useOverview } from '../live/OverviewProvider';
import { usePolling } from '../live/usePolling';

const STATE_ORDER: Record<Worker['state'], number> = { running: 0, draining: 1, lost: 2, stopped: 3 };

export function WorkersPage() {
  const { overview, status, dispatch } = useOverview();
  const now = useNow();
  const poll = useCallback(
    (signal: AbortSignal) => api.listWorkers(signal).then(({ workers }) => dispatch({ type: 'workers', workers })),
    [dispatch],
  );
  usePolling(poll, 5_000);

  const workers = useMemo(
    () =>
      Object.values(overview.workers).sort(
        (a, b) => STATE_ORDER[a.state] - STATE_ORDER[b.state] || a.host.localeCompare(b.host) || a.pid - b.pid,
      ),
    [overview.workers],
  );
  const active = workers.filter((w) => w.state === 'running' || w.state === 'draining');
  const slots = active.reduce((sum, w) => sum + w.concurrency, 0);
  const busy = active.reduce((sum, w) => sum + w.in_flight, 0);

  return (
    <div className="page">
      <div className="page-header">
        <h1>Workers</h1>
        <LiveIndicator status={status} />
        <div className="muted">
          {active.length} active · {busy}/{slots} slots busy
        </div>
      </div>
      <table className="table" data-testid="workers-table">
        <thead>
          <tr>
            <th>Worker</th>
            <th>Host</th>
            <th>PID</th>
            <th>Queues</th>
            <th>In flight</th>
            <th>State</th>
            <th>Last heartbeat</th>
            <th>Version</th>
          </tr>
        </thead>
        <tbody>
          {workers.map((w) => (
            <tr key={w.id} data-testid={`worker-row-${w.id}`} data-state={w.state}>
              <td className="mono ellipsis" title={`handlers: ${w.handlers.join(', ')}`}>
                {w.id}
              </td>
              <td>{w.host}</td>
              <td>{w.pid}</td>
              <td>{w.queues.join(', ')}</td>
              <td className="progress-cell">
                <div className="progress">
                  <div style={{ width: `${w.concurrency ? (100 * w.in_flight) / w.concurrency : 0}%` }} />
                </div>
                <span className="muted">
                  {w.in_flight}/{w.concurrency}
                </span>
              </td>
              <td>
                <StateBadge state={w.state} />
              </td>
              <td className={now - w.last_heartbeat_ms > 30_000 && w.state === 'running' ? 'text-failed' : ''}>
                {formatAgo(w.last_heartbeat_ms, now)}
              </td>
              <td className="muted">{w.version}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {workers.length === 0 && <div className="empty">No workers have registered.</div>}
    </div>
  );
}
