import { useCallback, useMemo } from 'react';
import { api } from '../api/client';
import { useNow } from '../clock';
import { LineChart, type Series } from '../components/LineChart';
import { LiveIndicator } from '../components/LiveIndicator';
import type { QueueSample } from '../live/overviewReducer';
import { useOverview } from '../live/OverviewProvider';
import { usePolling } from '../live/usePolling';

const MIN_WINDOW_MS = 3 * 60_000;

function seriesOf(history: QueueSample[], name: string, field: 'depth' | 'running' | 'workers_active' | 'workers_desired') {
  const points: { t: number; v: number }[] = [];
  for (const sample of history) {
    const queue = sample.queues[name];
    points.push({ t: sample.at_ms, v: queue ? queue[field] : 0 });
  }
  return points;
}

export function QueuesPage() {
  const { overview, status, dispatch } = useOverview();
  const now = useNow();
  // The stream pushes queue changes; polling adds samples while nothing changes, so the
  // chart keeps moving and a missed push heals within seconds.
  const poll = useCallback(
    (signal: AbortSignal) => api.listQueues(signal).then(({ queues }) => dispatch({ type: 'queues', queues, at_ms: Date.now() })),
    [dispatch],
  );
  usePolling(poll, 5_000);

  const { history, queues } = overview;
  const names = useMemo(() => {
    const all = new Set(queues.map((q) => q.name));
    for (const sample of history) for (const name of Object.keys(sample.queues)) all.add(name);
    return [...all].sort();
  }, [queues, history]);
  const to = Math.max(now, history[history.length - 1]?.at_ms ?? now);
  // At least a few minutes across, so a page opened a moment ago still reads as a timeline.
  const from = Math.min(history[0]?.at_ms ?? to, to - MIN_WINDOW_MS);

  return (
    <div className="page">
      <div className="page-header">
        <h1>Queues</h1>
        <LiveIndicator status={status} />
      </div>
      {names.length === 0 && <div className="empty">No queues yet.</div>}
      <div className="queue-grid">
        {names.map((name) => {
          const current = queues.find((q) => q.name === name);
          const load: Series[] = [
            { label: 'depth', color: '#60a5fa', points: seriesOf(history, name, 'depth') },
            { label: 'running', color: '#f59e0b', points: seriesOf(history, name, 'running') },
          ];
          const workers: Series[] = [
            { label: 'workers active', color: '#22c55e', points: seriesOf(history, name, 'workers_active') },
            { label: 'workers desired', color: '#a78bfa', points: seriesOf(history, name, 'workers_desired'), dashed: true },
          ];
          return (
            <section key={name} className="card" data-testid={`queue-${name}`}>
              <header className="card-header">
                <h2 className="mono">{name}</h2>
                <div className="queue-stats">
                  <span>
                    depth <b data-testid={`queue-depth-${name}`}>{current?.depth ?? 0}</b>
                  </span>
                  <span>
                    running <b>{current?.running ?? 0}</b>
                  </span>
                  <span>
                    workers <b>{current?.workers_active ?? 0}</b>/{current?.workers_desired ?? 0} desired
                  </span>
                </div>
              </header>
              <LineChart series={load} from={from} to={to} testId={`queue-chart-${name}`} />
              <LineChart series={workers} from={from} to={to} height={120} />
            </section>
          );
        })}
      </div>
    </div>
  );
}
