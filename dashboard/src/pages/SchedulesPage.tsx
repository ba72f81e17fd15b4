import { useCallback, useEffect, useState } from 'react';
import { dailyApi, describeTiming, type Schedule } from '../api/daily';
import { formatTime } from '../format';
import { Link, runPath } from '../router';

export type SchedulesState =
  | { status: 'loading' }
  | { status: 'error'; message: string }
  | { status: 'loaded'; schedules: Schedule[] };

const message = (err: unknown) => (err instanceof Error ? err.message : String(err));

/** A schedule's most recent runs, newest first. */
export function RecentRuns({ schedule }: { schedule: Schedule }) {
  const runs = schedule.recent_runs ?? [];
  if (runs.length === 0) return <div className="muted">No runs yet.</div>;
  return (
    <ul className="recent-runs" data-testid={`schedule-runs-${schedule.name}`}>
      {runs.map((r) => (
        <li key={r.id}>
          <Link to={runPath(r.id)} className="mono">
            {r.id}
          </Link>{' '}
          <span className={`state state-${r.state}`}>{r.state}</span> <span className="muted">tick {formatTime(r.schedule_tick_ms ?? null)}</span>
        </li>
      ))}
    </ul>
  );
}

export interface SchedulesViewProps {
  state: SchedulesState;
  /** The schedule whose recent runs are open, fetched with them. */
  open?: Schedule | null;
  onToggle?: (s: Schedule) => void;
  onShowRuns?: (s: Schedule) => void;
  onRefresh?: () => void;
}

export function SchedulesView({ state, open, onToggle, onShowRuns, onRefresh }: SchedulesViewProps) {
  return (
    <div className="page">
      <div className="page-header">
        <h1>Schedules</h1>
        {state.status === 'loaded' && <div className="muted">{state.schedules.length} defined</div>}
        {onRefresh && (
          <div className="filters">
            <button type="button" onClick={onRefresh} data-testid="schedules-refresh">
              Refresh
            </button>
          </div>
        )}
      </div>
      {state.status === 'loading' && <div className="empty">Loading schedules…</div>}
      {state.status === 'error' && <div className="error-box">Could not list schedules: {state.message}</div>}
      {state.status === 'loaded' && state.schedules.length === 0 && (
        <div className="empty" data-testid="schedules-empty">
          <p>No schedules.</p>
          <p>
            Create one with <code>apex schedules put NAME -f schedule.json</code>, or <code>PUT /api/v1/schedules/NAME</code> with{' '}
            <code>{'{"template": "research", "cron": "0 9 * * 1"}'}</code>.
          </p>
        </div>
      )}
      {state.status === 'loaded' && state.schedules.length > 0 && (
        <table className="table" data-testid="schedules-table">
          <thead>
            <tr>
              <th>Name</th>
              <th>Template</th>
              <th>When</th>
              <th>State</th>
              <th>Next fire</th>
              <th>Last tick</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {state.schedules.map((s) => (
              <tr key={s.name} data-testid={`schedule-row-${s.name}`}>
                <td className="mono">{s.name}</td>
                <td className="mono">{s.template}</td>
                <td className="mono">{describeTiming(s)}</td>
                <td>{s.paused ? 'paused' : 'active'}</td>
                <td>{s.paused ? <span className="muted">—</span> : formatTime(s.next_fire_ms)}</td>
                <td>{formatTime(s.last_tick_ms)}</td>
                <td>
                  <button type="button" onClick={() => onToggle?.(s)} data-testid={`schedule-toggle-${s.name}`}>
                    {s.paused ? 'Resume' : 'Pause'}
                  </button>{' '}
                  <button type="button" onClick={() => onShowRuns?.(s)}>
                    Recent runs
                  </button>
                  {open?.name === s.name && <RecentRuns schedule={open} />}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

export function SchedulesPage() {
  const [state, setState] = useState<SchedulesState>({ status: 'loading' });
  const [open, setOpen] = useState<Schedule | null>(null);
  const [attempt, setAttempt] = useState(0);
  const refresh = useCallback(() => setAttempt((n) => n + 1), []);

  useEffect(() => {
    const controller = new AbortController();
    dailyApi.listSchedules(controller.signal).then(
      ({ schedules }) => setState({ status: 'loaded', schedules }),
      (err: unknown) => {
        if (!controller.signal.aborted) setState({ status: 'error', message: message(err) });
      },
    );
    return () => controller.abort();
  }, [attempt]);

  const onToggle = useCallback(
    (s: Schedule) => {
      (s.paused ? dailyApi.resumeSchedule(s.name) : dailyApi.pauseSchedule(s.name)).then(refresh, (err: unknown) =>
        setState({ status: 'error', message: message(err) }),
      );
    },
    [refresh],
  );
  const onShowRuns = useCallback((s: Schedule) => {
    dailyApi.getSchedule(s.name).then(setOpen, (err: unknown) => setState({ status: 'error', message: message(err) }));
  }, []);

  return <SchedulesView state={state} open={open} onToggle={onToggle} onShowRuns={onShowRuns} onRefresh={refresh} />;
}
