// What a person can do about one task from its panel: approve or reject it while it waits
// (with its prompt and a comment), raise the budget it waits on, or cancel it while it is
// unfinished.

import { useState } from 'react';
import { api } from '../api/client';
import type { Task } from '../api/types';
import { approvalPrompt, budgetWait, decisionBody, raiseBody, taskActions } from './decisions';

interface Props {
  runId: string;
  task: Task;
  input: unknown;
  runRunning: boolean;
}

export function TaskActions({ runId, task, input, runRunning }: Props) {
  const [comment, setComment] = useState('');
  const [cost, setCost] = useState('');
  const [tokens, setTokens] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const { decide, cancel } = taskActions(task.state, runRunning);
  if (!decide && !cancel) return null;
  const prompt = approvalPrompt(task.handler, input);
  const budget = budgetWait(task);
  const raise = () => {
    const body = raiseBody(comment, cost, tokens);
    if (typeof body === 'string') setError(body);
    else act(() => api.approveTask(runId, task.id, body));
  };
  const act = (call: () => Promise<unknown>) => {
    setBusy(true);
    setError(null);
    call()
      .catch((err: unknown) => setError(err instanceof Error ? err.message : String(err)))
      .finally(() => setBusy(false));
  };
  return (
    <section className={decide ? 'decision waiting-decision' : 'decision'} data-testid="task-actions">
      {decide && (
        <>
          <h3>{budget ? 'Waiting for a budget raise' : 'Waiting for a decision'}</h3>
          {budget && (
            <p className="decision-prompt" data-testid="budget-wait">
              The {budget.scope === 'run' ? "run's" : "task's"} budget cannot cover this task: {budget.message}
            </p>
          )}
          {prompt && (
            <p className="decision-prompt" data-testid="approval-prompt">
              {prompt}
            </p>
          )}
          <textarea
            placeholder="Comment (optional)"
            value={comment}
            onChange={(e) => setComment(e.target.value)}
            data-testid="decision-comment"
          />
          {budget && (
            <div className="run-actions">
              <input
                inputMode="decimal"
                placeholder="New max cost (USD)"
                value={cost}
                onChange={(e) => setCost(e.target.value)}
                data-testid="raise-cost"
              />
              <input
                inputMode="numeric"
                placeholder="New max tokens"
                value={tokens}
                onChange={(e) => setTokens(e.target.value)}
                data-testid="raise-tokens"
              />
            </div>
          )}
          <div className="run-actions">
            {budget ? (
              <button type="button" disabled={busy} onClick={raise} data-testid="raise-budget">
                Raise budget
              </button>
            ) : (
              <button
                type="button"
                disabled={busy}
                onClick={() => act(() => api.approveTask(runId, task.id, decisionBody(comment)))}
                data-testid="approve-task"
              >
                Approve
              </button>
            )}
            <button
              type="button"
              className="danger"
              disabled={busy}
              onClick={() => act(() => api.rejectTask(runId, task.id, decisionBody(comment)))}
              data-testid="reject-task"
            >
              Reject
            </button>
          </div>
        </>
      )}
      {cancel && (
        <div className="run-actions">
          <button
            type="button"
            className="danger"
            disabled={busy}
            onClick={() => act(() => api.cancelTask(runId, task.id))}
            data-testid="cancel-task"
          >
            Cancel task
          </button>
        </div>
      )}
      {error && (
        <span className="text-failed" data-testid="task-action-error">
          {error}
        </span>
      )}
    </section>
  );
}
