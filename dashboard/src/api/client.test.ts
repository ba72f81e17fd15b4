import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { api, NOT_JSON } from './client';

/** Records every fetch and answers each with an empty JSON object. */
function recordFetch() {
  const calls: { url: string; init: RequestInit }[] = [];
  vi.stubGlobal(
    'fetch',
    vi.fn(async (url: string, init: RequestInit) => {
      calls.push({ url, init });
      return new Response('{}', { status: 200, headers: { 'Content-Type': 'application/json' } });
    }),
  );
  return calls;
}

const header = (init: RequestInit, name: string) => (init.headers as Record<string, string>)[name];

describe('api client', () => {
  let calls: ReturnType<typeof recordFetch>;
  beforeEach(() => {
    calls = recordFetch();
  });
  afterEach(() => vi.unstubAllGlobals());

  it('declares JSON on every write, with a body or without', async () => {
    await api.submitRun('{"tasks": []}');
    await api.validate('{"tasks": []}');
    await api.cancelRun('r1');
    await api.retryRun('r1');
    expect(calls.map((c) => [c.init.method, header(c.init, 'Content-Type')])).toEqual([
      ['POST', 'application/json'],
      ['POST', 'application/json'],
      ['POST', 'application/json'],
      ['POST', 'application/json'],
    ]);
    // A pasted DAG goes out exactly as typed.
    expect(calls[0]!.init.body).toBe('{"tasks": []}');
  });

  it('sends reads without a body or a content type', async () => {
    await api.getRun('r1');
    expect(header(calls[0]!.init, 'Content-Type')).toBeUndefined();
    expect(calls[0]!.init.body).toBeUndefined();
  });

  it('asks for a page of tasks with states, cursor and size', async () => {
    await api.listTasks('run/1', { states: ['failed', 'running'], after: 'task-9', limit: 5000 });
    await api.listTasks('r1', {});
    expect(calls.map((c) => c.url)).toEqual([
      '/api/v1/runs/run%2F1/tasks?state=failed%2Crunning&after=task-9&limit=5000',
      '/api/v1/runs/r1/tasks',
    ]);
  });

  it('refuses a success that is not JSON, as an unrouted path answers', async () => {
    vi.stubGlobal('fetch', vi.fn(async () => new Response('<!doctype html>', { status: 200, headers: { 'Content-Type': 'text/html' } })));
    await expect(api.listTasks('r1', {})).rejects.toMatchObject({ status: 200, code: NOT_JSON });
  });

  it('asks for a summary without tasks', async () => {
    await api.getRunSummary('r1');
    expect(calls[0]!.url).toBe('/api/v1/runs/r1?tasks=false');
  });
});
