import { useCallback, useEffect, useState } from 'react';
import { api } from '../api/client';
import type { Agent, AgentPrice } from '../api/types';
import { formatCost } from '../usage';

/** System prompts longer than this show their start; the rest opens on click. */
export const PROMPT_PREVIEW_CHARS = 80;

export type AgentsState =
  | { status: 'loading' }
  | { status: 'error'; message: string }
  | { status: 'loaded'; agents: Agent[] };

/** `$0.15 / $0.60`: dollars per million input, then output, tokens. */
export function formatPrice(price: AgentPrice | null): string {
  if (!price) return '—';
  return `${formatCost(price.input_per_mtok)} / ${formatCost(price.output_per_mtok)}`;
}

/** The start of a prompt on one line, cut at a word where one is near, or null if it all fits. */
export function promptPreview(prompt: string, limit = PROMPT_PREVIEW_CHARS): string | null {
  const flat = prompt.replace(/\s+/g, ' ').trim();
  if (flat.length <= limit && !prompt.includes('\n')) return null;
  if (flat.length <= limit) return `${flat} …`;
  const cut = flat.slice(0, limit);
  const space = cut.lastIndexOf(' ');
  return `${space > limit * 0.6 ? cut.slice(0, space) : cut}…`;
}

function SystemPrompt({ name, prompt }: { name: string; prompt: string | null }) {
  if (!prompt) return <span className="muted">—</span>;
  const preview = promptPreview(prompt);
  if (preview === null) return <span title={prompt}>{prompt}</span>;
  return (
    <details className="agent-prompt" data-testid={`agent-prompt-${name}`}>
      <summary title={prompt}>{preview}</summary>
      <pre>{prompt}</pre>
    </details>
  );
}

export function AgentsEmpty() {
  return (
    <div className="empty" data-testid="agents-empty">
      <p>No agents are registered.</p>
      <p>
        Register one with <code>apex agents put NAME --file agent.json</code>, or <code>PUT /api/v1/agents/NAME</code>{' '}
        with a body such as <code>{'{"provider": "openai", "model": "gpt-4o-mini"}'}</code>. A task whose{' '}
        <code>agent</code> is not defined in its run uses the registered agent of that name.
      </p>
    </div>
  );
}

export function AgentsTable({ agents }: { agents: Agent[] }) {
  return (
    <table className="table" data-testid="agents-table">
      <thead>
        <tr>
          <th>Name</th>
          <th>Provider</th>
          <th>Model</th>
          <th>Max concurrency</th>
          <th title="US dollars per million input / output tokens">Price per Mtok (in / out)</th>
          <th>System prompt</th>
        </tr>
      </thead>
      <tbody>
        {agents.map((agent) => (
          <tr key={agent.name} data-testid={`agent-row-${agent.name}`}>
            <td className="mono">{agent.name}</td>
            <td>{agent.provider}</td>
            <td className="mono">{agent.model}</td>
            <td>{agent.max_concurrency ?? <span className="muted">—</span>}</td>
            <td className="usage-cell">{formatPrice(agent.price)}</td>
            <td className="agent-prompt-cell">
              <SystemPrompt name={agent.name} prompt={agent.system_prompt} />
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** What the page shows for each state of the request; separate from fetching so tests render it. */
export function AgentsView({ state, onRefresh }: { state: AgentsState; onRefresh?: () => void }) {
  return (
    <div className="page">
      <div className="page-header">
        <h1>Agents</h1>
        {state.status === 'loaded' && <div className="muted">{state.agents.length} registered</div>}
        {onRefresh && (
          <div className="filters">
            <button type="button" onClick={onRefresh} data-testid="agents-refresh">
              Refresh
            </button>
          </div>
        )}
      </div>
      {state.status === 'loading' && <div className="empty">Loading agents…</div>}
      {state.status === 'error' && <div className="error-box">Could not list agents: {state.message}</div>}
      {state.status === 'loaded' &&
        (state.agents.length === 0 ? <AgentsEmpty /> : <AgentsTable agents={state.agents} />)}
    </div>
  );
}

export function AgentsPage() {
  const [state, setState] = useState<AgentsState>({ status: 'loading' });
  const [attempt, setAttempt] = useState(0);
  const refresh = useCallback(() => setAttempt((n) => n + 1), []);

  // The registry changes only when someone edits it, so it is read on opening and on Refresh.
  useEffect(() => {
    const controller = new AbortController();
    api.listAgents(controller.signal).then(
      ({ agents }) => setState({ status: 'loaded', agents }),
      (err: unknown) => {
        if (!controller.signal.aborted) setState({ status: 'error', message: err instanceof Error ? err.message : String(err) });
      },
    );
    return () => controller.abort();
  }, [attempt]);

  return <AgentsView state={state} onRefresh={refresh} />;
}
