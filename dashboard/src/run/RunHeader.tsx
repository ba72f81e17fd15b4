// The run page's header: name, state, live status, progress, usage, timings and the
// run's actions. It only needs the run's summary, so it shows while the tasks still load.

import { useState } from 'react';
import { api } from '../api/client';
import type { RunHead, RunSummary, Usage } from '../api/types';
import { CountsBar } from '../components/CountsBar';
import { LiveIndicator } from '../components/LiveIndicator';
import { StateBadge } from '../components/StateBadge';
import { formatDuration, formatTime, span } from '../format';
import { doneCount } from '../live/runReducer';
import type { SocketStatus } from '../live/socket';
import { Link } from '../router';
import { formatUsage, formatUsageLong, hasUsage } from '../usage';

export type RunAct = (call: (id: string) => Promise<RunSummary>) => Promise<void>;

interface Props {
  summary: RunHead;
  status: SocketStatus;
  usage: Usage | null | undefined;
  now: number;
  act: RunAct;
}

export function RunHeader({ summary, status, usage, now, act }: Props) {
  const done = doneCount(summary.counts);
  return (
    <header className="run-header">
      <div className="run-title">
        <Link to="/runs" className="muted">
          Runs
        </Link>
        <span className="muted"> / </span>
        <h1 data-testid="run-name">{summary.name || summary.id}</h1>
        <StateBadge state={summary.state} testId="run-state" />
        <LiveIndicator status={status} />
      </div>
      <div className="run-meta">
        <span className="mono muted" data-testid="run-id">
          {summary.id}
        </span>
        <span>
          <b data-testid="run-progress">
            {done}/{summary.task_count}
          </b>{' '}
          done
        </span>
        {summary.counts.failed > 0 && <span className="text-failed">{summary.counts.failed} failed</span>}
        {hasUsage(usage) && (
          <span data-testid="run-usage" title={formatUsageLong(usage)}>
            {formatUsage(usage)}
          </span>
        )}
        <span>
          created {formatTime(summary.created_at_ms)}
          {summary.created_by && (
            <>
              {' '}
              by <b data-testid="run-created-by">{summary.created_by}</b>
            </>
          )}
        </span>
        {summary.rerun_of && (
          <span data-testid="run-rerun-of">
            re-run of <Link to={`/runs/${encodeURIComponent(summary.rerun_of.run)}`}>{summary.rerun_of.run.slice(0, 8)}</Link>{' '}
            from {summary.rerun_of.from.join(', ')}
          </span>
        )}
        <span>{formatDuration(span(summary.created_at_ms, summary.finished_at_ms, now))}</span>
        <RunActors summary={summary} />
        <div className="run-progress-bar">
          <CountsBar counts={summary.counts} total={summary.task_count} />
        </div>
        <RunActions summary={summary} act={act} />
      </div>
      <RunError summary={summary} />
    </header>
  );
}

/** Who changed the run after creating it: "cancelled by ops", "retried by ci". */
function RunActors({ summary }: { summary: RunHead }) {
  const verbs: Record<string, string> = { cancelled: 'cancelled', running: 'retried' };
  const acts = (summary.history ?? []).filter((e) => e.by && e.seq > 1 && e.state && verbs[e.state]);
  if (acts.length === 0) return null;
  return (
    <span data-testid="run-actors">
      {acts.map((e) => `${verbs[e.state as string]} by ${e.by as string}`).join(' · ')}
    </span>
  );
}

function RunError({ summary }: { summary: RunHead }) {
  if (!summary.error) return null;
  return <div className="error-box">{summary.error}</div>;
}

function RunActions({ summary, act }: { summary: RunHead; act: RunAct }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const run = (call: (id: string) => Promise<RunSummary>) => {
    setBusy(true);
    setError(null);
    act(call)
      .catch((err: unknown) => setError(err instanceof Error ? err.message : String(err)))
      .finally(() => setBusy(false));
  };
  const retryable = summary.state === 'failed' || summary.state === 'cancelled';
  return (
    <div className="run-actions">
      <button
        type="button"
        className="danger"
        disabled={busy || summary.state !== 'running'}
        onClick={() => run(api.cancelRun)}
        data-testid="cancel-run"
      >
        Cancel
      </button>
      <button type="button" disabled={busy || !retryable} onClick={() => run(api.retryRun)} data-testid="retry-run">
        Retry failed
      </button>
      {error && (
        <span className="text-failed" data-testid="run-action-error">
          {error}
        </span>
      )}
    </div>
  );
}
