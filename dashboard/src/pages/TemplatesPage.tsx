import { useCallback, useEffect, useState } from 'react';
import { dailyApi, type Template } from '../api/daily';
import { formatTime } from '../format';

export type TemplatesState =
  | { status: 'loading' }
  | { status: 'error'; message: string }
  | { status: 'loaded'; templates: Template[] };

/** `topic = "tides", who (required)`. */
export function describeParams(params: Template['params']): string {
  const names = Object.entries(params ?? {});
  if (names.length === 0) return '—';
  return names.map(([name, p]) => (p && 'default' in p ? `${name} = ${JSON.stringify(p.default)}` : `${name} (required)`)).join(', ');
}

export function TemplatesView({ state, onRefresh }: { state: TemplatesState; onRefresh?: () => void }) {
  return (
    <div className="page">
      <div className="page-header">
        <h1>Templates</h1>
        {state.status === 'loaded' && <div className="muted">{state.templates.length} stored</div>}
        {onRefresh && (
          <div className="filters">
            <button type="button" onClick={onRefresh}>
              Refresh
            </button>
          </div>
        )}
      </div>
      {state.status === 'loading' && <div className="empty">Loading templates…</div>}
      {state.status === 'error' && <div className="error-box">Could not list templates: {state.message}</div>}
      {state.status === 'loaded' && state.templates.length === 0 && (
        <div className="empty" data-testid="templates-empty">
          <p>No templates.</p>
          <p>
            Store one with <code>apex templates put NAME -f template.json</code> (a DAG plus <code>params</code>), then start it
            with <code>apex templates run NAME -p key=value</code>.
          </p>
        </div>
      )}
      {state.status === 'loaded' && state.templates.length > 0 && (
        <table className="table" data-testid="templates-table">
          <thead>
            <tr>
              <th>Name</th>
              <th>Latest version</th>
              <th>Versions</th>
              <th>Parameters</th>
              <th>Stored</th>
              <th>By</th>
            </tr>
          </thead>
          <tbody>
            {state.templates.map((t) => (
              <tr key={t.name} data-testid={`template-row-${t.name}`}>
                <td className="mono">{t.name}</td>
                <td>{t.version}</td>
                <td>{t.versions.length}</td>
                <td className="mono">{describeParams(t.params)}</td>
                <td>{formatTime(t.created_at_ms)}</td>
                <td>{t.created_by}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

export function TemplatesPage() {
  const [state, setState] = useState<TemplatesState>({ status: 'loading' });
  const [attempt, setAttempt] = useState(0);
  const refresh = useCallback(() => setAttempt((n) => n + 1), []);
  useEffect(() => {
    const controller = new AbortController();
    dailyApi.listTemplates(controller.signal).then(
      ({ templates }) => setState({ status: 'loaded', templates }),
      (err: unknown) => {
        if (!controller.signal.aborted) setState({ status: 'error', message: err instanceof Error ? err.message : String(err) });
      },
    );
    return () => controller.abort();
  }, [attempt]);
  return <TemplatesView state={state} onRefresh={refresh} />;
}
