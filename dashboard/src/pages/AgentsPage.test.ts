import { createElement } from 'react';
import { renderToStaticMarkup } from 'react-dom/server';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { saveToken } from '../api/auth';
import { api } from '../api/client';
import type { Agent } from '../api/types';
import { AgentsView, formatPrice, promptPreview } from './AgentsPage';

function agent(name: string, fields: Partial<Agent> = {}): Agent {
  return {
    name,
    provider: 'openai',
    model: 'gpt-4o-mini',
    system_prompt: null,
    temperature: null,
    max_output_tokens: null,
    max_concurrency: null,
    price: null,
    created_at_ms: 1_000,
    updated_at_ms: 2_000,
    ...fields,
  };
}

const LONG_PROMPT =
  'You are a careful researcher. Read every source twice, cite each claim with its URL, and say plainly when the sources disagree.';

describe('listAgents', () => {
  afterEach(() => {
    vi.unstubAllGlobals();
    saveToken('');
  });

  it('reads the registry with the API token', async () => {
    const fetch = vi.fn(
      async (_url: string, _init: RequestInit) =>
        new Response(JSON.stringify({ agents: [agent('researcher')] }), {
          status: 200,
          headers: { 'Content-Type': 'application/json' },
        }),
    );
    vi.stubGlobal('fetch', fetch);
    saveToken('s3cret');
    const { agents } = await api.listAgents();
    expect(agents.map((a) => a.name)).toEqual(['researcher']);
    const [url, init] = fetch.mock.calls[0]!;
    expect(url).toBe('/api/v1/agents');
    expect(init.method).toBe('GET');
    expect((init.headers as Record<string, string>).Authorization).toBe('Bearer s3cret');
  });

  it('turns an error answer into its message', async () => {
    const body = { error: { code: 'unavailable', message: 'the store is unavailable; try again shortly' } };
    vi.stubGlobal('fetch', vi.fn(async () => new Response(JSON.stringify(body), { status: 503 })));
    await expect(api.listAgents()).rejects.toMatchObject({ status: 503, message: body.error.message });
  });
});

describe('AgentsView', () => {
  const render = (state: Parameters<typeof AgentsView>[0]['state']) => renderToStaticMarkup(createElement(AgentsView, { state }));

  it('lists each agent with its provider, model, limit, price and prompt', () => {
    const html = render({
      status: 'loaded',
      agents: [
        agent('researcher', {
          max_concurrency: 8,
          price: { input_per_mtok: 0.15, output_per_mtok: 0.6 },
          system_prompt: LONG_PROMPT,
        }),
        agent('writer', { provider: 'anthropic', model: 'claude-sonnet', system_prompt: 'Write briefly.' }),
      ],
    });
    expect(html).toContain('data-testid="agent-row-researcher"');
    expect(html).toContain('<td>anthropic</td>');
    expect(html).toContain('$0.15 / $0.60');
    expect(html).toContain('<td>8</td>');
    // A long prompt shows its start, keeps the whole text in the title and opens on click.
    expect(html).toContain('data-testid="agent-prompt-researcher"');
    expect(html).toContain(`title="${LONG_PROMPT}"`);
    expect(html).toContain(`<pre>${LONG_PROMPT}</pre>`);
    // A short one is shown as it is.
    expect(html).toContain('<span title="Write briefly.">Write briefly.</span>');
    expect(html).not.toContain('agents-empty');
  });

  it('explains how to register an agent when there is none', () => {
    const html = render({ status: 'loaded', agents: [] });
    expect(html).toContain('data-testid="agents-empty"');
    expect(html).toContain('apex agents put NAME --file agent.json');
    expect(html).toContain('PUT /api/v1/agents/NAME');
    expect(html).not.toContain('agents-table');
  });

  it('says why the list could not be read', () => {
    const html = render({ status: 'error', message: 'the store is unavailable' });
    expect(html).toContain('Could not list agents: the store is unavailable');
  });
});

describe('agent formatting', () => {
  it('writes prices per million tokens, a dash when unset', () => {
    expect(formatPrice({ input_per_mtok: 3, output_per_mtok: 15 })).toBe('$3.00 / $15.00');
    expect(formatPrice(null)).toBe('—');
  });

  it('cuts a long prompt at a word and leaves a short one alone', () => {
    expect(promptPreview('Be brief.')).toBeNull();
    const preview = promptPreview(LONG_PROMPT)!;
    expect(preview.endsWith('…')).toBe(true);
    expect(preview.length).toBeLessThanOrEqual(81);
    expect(LONG_PROMPT.startsWith(preview.slice(0, -1))).toBe(true);
    expect(promptPreview('line one\nline two')).toBe('line one line two …');
  });
});
