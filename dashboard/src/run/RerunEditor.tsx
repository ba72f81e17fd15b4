// "Re-run from here" on a task of a finished run: an editor holding the task's input as
// JSON; starting the re-run posts it and opens the new run.

import { useState } from 'react';
import { api } from '../api/client';
import { navigate, runPath } from '../router';
import { rerunBody } from './rerun';

interface Props {
  runId: string;
  taskId: string;
  input: unknown;
  runRunning: boolean;
}

export function RerunEditor({ runId, taskId, input, runRunning }: Props) {
  const [open, setOpen] = useState(false);
  const [text, setText] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  if (runRunning) return null;
  const start = () => {
    const { body, error: invalid } = rerunBody(taskId, input, text);
    if (!body) {
      setError(invalid);
      return;
    }
    setBusy(true);
    setError(null);
    api
      .rerunFrom(runId, body)
      .then((run) => navigate(runPath(run.id)))
      .catch((err: unknown) => setError(err instanceof Error ? err.message : String(err)))
      .finally(() => setBusy(false));
  };
  return (
    <section className="decision" data-testid="rerun-editor">
      {!open ? (
        <div className="run-actions">
          <button
            type="button"
            onClick={() => {
              setText(JSON.stringify(input ?? null, null, 2));
              setOpen(true);
            }}
            data-testid="rerun-open"
          >
            Re-run from here
          </button>
        </div>
      ) : (
        <>
          <h3>Re-run from this task</h3>
          <p className="muted">
            This task and everything after it run again in a new run; the tasks before it keep their outputs.
          </p>
          <textarea value={text} onChange={(e) => setText(e.target.value)} rows={8} className="mono" data-testid="rerun-input" />
          <div className="run-actions">
            <button type="button" disabled={busy} onClick={start} data-testid="rerun-start">
              Start re-run
            </button>
            <button type="button" disabled={busy} onClick={() => setOpen(false)}>
              Close
            </button>
          </div>
        </>
      )}
      {error && (
        <span className="text-failed" data-testid="rerun-error">
          {error}
        </span>
      )}
    </section>
  );
}
