import { useState, type ChangeEvent } from 'react';
import { api, ApiError } from '../api/client';
import type { ErrorDetail } from '../api/types';
import { navigate, runPath } from '../router';
import { EXAMPLES } from './submitExamples';

interface Problem {
  message: string;
  code?: string;
  details: ErrorDetail[];
}

function problemOf(err: unknown): Problem {
  if (err instanceof ApiError) return { message: err.message, code: err.code, details: err.details };
  return { message: err instanceof Error ? err.message : String(err), details: [] };
}

/** Parse locally first: a typo is reported at once, with where it is. */
function parseProblem(text: string): Problem | null {
  if (!text.trim()) return { message: 'Paste a DAG spec (JSON) or choose a file.', details: [] };
  try {
    JSON.parse(text);
    return null;
  } catch (err) {
    return { message: `Not valid JSON: ${err instanceof Error ? err.message : String(err)}`, code: 'invalid_json', details: [] };
  }
}

export function SubmitPage() {
  const [text, setText] = useState('');
  const [problem, setProblem] = useState<Problem | null>(null);
  const [valid, setValid] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const edit = (value: string) => {
    setText(value);
    setValid(null);
  };

  const loadFile = (event: ChangeEvent<HTMLInputElement>) => {
    const file = event.target.files?.[0];
    if (!file) return;
    file.text().then(edit, (err: unknown) => setProblem(problemOf(err)));
    event.target.value = '';
  };

  const send = async (mode: 'submit' | 'validate') => {
    const local = parseProblem(text);
    setValid(null);
    setProblem(local);
    if (local) return;
    setBusy(true);
    try {
      if (mode === 'validate') {
        const answer = await api.validate(text);
        setValid(`Valid: ${answer.tasks} tasks.`);
      } else {
        const run = await api.submitRun(text);
        navigate(runPath(run.id));
      }
    } catch (err) {
      setProblem(problemOf(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <div className="page submit-page">
      <div className="page-header">
        <h1>Submit a DAG</h1>
        <div className="filters">
          {Object.keys(EXAMPLES).map((name) => (
            <button key={name} type="button" onClick={() => edit(JSON.stringify(EXAMPLES[name], null, 2))} data-testid={`example-${name}`}>
              Example: {name}
            </button>
          ))}
          <label className="button">
            Upload file…
            <input type="file" accept=".json,application/json" onChange={loadFile} hidden data-testid="submit-file" />
          </label>
        </div>
      </div>
      <textarea
        className="spec-input mono"
        spellCheck={false}
        value={text}
        onChange={(e) => edit(e.target.value)}
        placeholder='{"name": "my-run", "tasks": [{"id": "a", "handler": "echo", "input": {}}]}'
        data-testid="submit-json"
        aria-invalid={problem ? true : undefined}
        aria-describedby="submit-errors"
      />
      {problem && (
        <div className="error-box" id="submit-errors" data-testid="submit-errors" role="alert">
          <strong data-testid="submit-error-message">{problem.message}</strong>
          {problem.code && <span className="muted mono"> ({problem.code})</span>}
          {problem.details.length > 0 && (
            <ul>
              {problem.details.map((d, i) => (
                <li key={i} data-testid="submit-error-detail" data-code={d.code}>
                  <span className="mono">{d.code}</span>: {d.message}
                  {d.tasks && d.tasks.length > 0 && <span className="muted"> — tasks: {d.tasks.join(', ')}</span>}
                </li>
              ))}
            </ul>
          )}
        </div>
      )}
      {valid && (
        <div className="ok-box" data-testid="submit-valid">
          {valid}
        </div>
      )}
      <div className="submit-actions">
        <button type="button" disabled={busy} onClick={() => void send('validate')} data-testid="submit-validate">
          Validate
        </button>
        <button type="button" className="primary" disabled={busy} onClick={() => void send('submit')} data-testid="submit-button">
          {busy ? 'Submitting…' : 'Submit run'}
        </button>
      </div>
    </div>
  );
}
