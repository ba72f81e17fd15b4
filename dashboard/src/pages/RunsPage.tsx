import { useEffect, useMemo, useState } from 'react';
import { api } from '../api/client';
import { RUN_STATES, type RunState } from '../api/types';
import { useNow } from '../clock';
import { CountsBar } from '../components/CountsBar';
import { LiveIndicator } from '../components/LiveIndicator';
import { StateBadge } from '../components/StateBadge';
import { formatDuration, formatTime, span } from '../format';
import { sortRuns } from '../live/overviewReducer';
import { useOverview } from '../live/OverviewProvider';
import { doneCount } from '../live/runReducer';
import { Link, runPath } from '../router';
import { formatUsage, formatUsageLong, hasUsage } from '../usage';

const PAGE_SIZE = 100;

export function RunsPage() {
  const { overview, status, dispatch } = useOverview();
  const [stateFilter, setStateFilter] = useState<RunState | ''>('');
  const [nameFilter, setNameFilter] = useState('');
  const [next, setNext] = useState<string | null>(null);
  const [loadError, setLoadError] = useState<string | null>(null);
  const now = useNow();

  // The live stream covers recent runs; REST fills in the rest of the filtered view and
  // remembers where the next (older) page starts.
  useEffect(() => {
    const controller = new AbortController();
    api.listRuns({ state: stateFilter, limit: PAGE_SIZE }, controller.signal).then(
      (page) => {
        dispatch({ type: 'runs', runs: page.runs });
        setNext(page.next);
        setLoadError(null);
      },
      (err: unknown) => {
        if (!controller.signal.aborted) setLoadError(err instanceof Error ? err.message : String(err));
      },
    );
    return () => controller.abort();
  }, [stateFilter, dispatch]);

  const loadOlder = () => {
    api.listRuns({ state: stateFilter, limit: PAGE_SIZE, before: next }).then(
      (page) => {
        dispatch({ type: 'runs', runs: page.runs });
        setNext(page.next);
      },
      (err: unknown) => setLoadError(err instanceof Error ? err.message : String(err)),
    );
  };

  const runs = useMemo(() => {
    const needle = nameFilter.trim().toLowerCase();
    return sortRuns(Object.values(overview.runs)).filter(
      (run) =>
        (!stateFilter || run.state === stateFilter) &&
        (!needle || run.name.toLowerCase().includes(needle) || run.id.toLowerCase().includes(needle)),
    );
  }, [overview.runs, stateFilter, nameFilter]);
  // Only servers with agents report usage; elsewhere the column would be all dashes.
  const showUsage = useMemo(() => Object.values(overview.runs).some((run) => hasUsage(run.usage)), [overview.runs]);

  return (
    <div className="page">
      <div className="page-header">
        <h1>Runs</h1>
        <LiveIndicator status={status} />
        <div className="filters">
          <select
            value={stateFilter}
            onChange={(e) => setStateFilter(e.target.value as RunState | '')}
            data-testid="runs-filter-state"
            aria-label="Filter by state"
          >
            <option value="">all states</option>
            {RUN_STATES.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
          <input
            type="search"
            placeholder="Filter by name or id"
            value={nameFilter}
            onChange={(e) => setNameFilter(e.target.value)}
            data-testid="runs-filter-name"
          />
          <Link to="/submit" className="button primary">
            New run
          </Link>
        </div>
      </div>
      {loadError && <div className="error-box">Could not list runs: {loadError}</div>}
      <table className="table" data-testid="runs-table">
        <thead>
          <tr>
            <th>Name</th>
            <th>State</th>
            <th>Progress</th>
            <th>Failures</th>
            {showUsage && <th>Usage</th>}
            <th>Created</th>
            <th>Duration</th>
            <th>ID</th>
          </tr>
        </thead>
        <tbody>
          {runs.map((run) => (
            <tr key={run.id} data-testid={`run-row-${run.id}`} data-state={run.state}>
              <td>
                <Link to={runPath(run.id)}>{run.name || '(unnamed)'}</Link>
              </td>
              <td>
                <StateBadge state={run.state} />
              </td>
              <td className="progress-cell">
                <CountsBar counts={run.counts} total={run.task_count} />
                <span className="muted">
                  {doneCount(run.counts)}/{run.task_count}
                </span>
              </td>
              <td className={run.counts.failed > 0 ? 'text-failed' : 'muted'}>{run.counts.failed}</td>
              {showUsage && (
                <td className="usage-cell" title={formatUsageLong(run.usage)} data-testid={`run-usage-${run.id}`}>
                  {formatUsage(run.usage) || <span className="muted">—</span>}
                </td>
              )}
              <td>{formatTime(run.created_at_ms)}</td>
              <td>{formatDuration(span(run.created_at_ms, run.finished_at_ms, now))}</td>
              <td className="mono muted ellipsis">{run.id}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {runs.length === 0 && (
        <div className="empty">
          {overview.loaded || !loadError ? 'No runs match.' : ''} <Link to="/submit">Submit a DAG</Link>
        </div>
      )}
      {next && (
        <button type="button" onClick={loadOlder} data-testid="runs-load-more">
          Load older runs
        </button>
      )}
    </div>
  );
}
