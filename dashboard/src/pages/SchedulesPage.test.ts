import { createElement } from 'react';
import { renderToStaticMarkup } from 'react-dom/server';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { saveToken } from '../api/auth';
import { dailyApi, describeTiming, type Schedule, type Template } from '../api/daily';
import { summary } from '../testing/fixtures';
import { SchedulesView } from './SchedulesPage';
import { describeParams, TemplatesView } from './TemplatesPage';

function schedule(name: string, fields: Partial<Schedule> = {}): Schedule {
  return {
    name,
    template: 'research',
    params: {},
    every_s: 60,
    paused: false,
    overlap: 'skip',
    catch_up: true,
    created_at_ms: 1_000,
    updated_at_ms: 1_000,
    last_tick_ms: null,
    next_fire_ms: 61_000,
    ...fields,
  };
}

describe('schedule requests', () => {
  afterEach(() => {
    vi.unstubAllGlobals();
    saveToken('');
  });

  it('pauses with a POST to the schedule, with the token', async () => {
    const fetch = vi.fn(
      async (_url: string, _init: RequestInit) =>
        new Response(JSON.stringify(schedule('nightly', { paused: true })), {
          status: 200,
          headers: { 'Content-Type': 'application/json' },
        }),
    );
    vi.stubGlobal('fetch', fetch);
    saveToken('s3cret');
    const paused = await dailyApi.pauseSchedule('night/ly');
    expect(paused.paused).toBe(true);
    const [url, init] = fetch.mock.calls[0]!;
    expect(url).toBe('/api/v1/schedules/night%2Fly/pause');
    expect(init.method).toBe('POST');
    expect((init.headers as Record<string, string>).Authorization).toBe('Bearer s3cret');
  });
});

describe('SchedulesView', () => {
  const render = (props: Parameters<typeof SchedulesView>[0]) => renderToStaticMarkup(createElement(SchedulesView, props));

  it('lists schedules with their timing, state and next fire, and a pause or resume button', () => {
    const html = render({
      state: {
        status: 'loaded',
        schedules: [
          schedule('nightly', { cron: '0 2 * * *', every_s: undefined, timezone: 'Europe/Paris' }),
          schedule('ping', { paused: true, next_fire_ms: null }),
        ],
      },
    });
    expect(html).toContain('data-testid="schedule-row-nightly"');
    expect(html).toContain('0 2 * * * (Europe/Paris)');
    expect(html).toContain('every 60 s');
    expect(html).toMatch(/schedule-toggle-nightly">Pause</);
    expect(html).toMatch(/schedule-toggle-ping">Resume</);
  });

  it('shows the open schedule’s recent runs with links', () => {
    const open = schedule('ping', {
      recent_runs: [
        summary('r_1', {
          name: 'ping',
          state: 'succeeded',
          finished_at_ms: 2,
          task_count: 1,
          counts: { pending: 0, ready: 0, queued: 0, running: 0, waiting: 0, succeeded: 1, failed: 0, cancelled: 0, skipped: 0 },
          last_seq: 3,
          schedule: 'ping',
          schedule_tick_ms: 1,
        }),
      ],
    });
    const html = render({ state: { status: 'loaded', schedules: [open] }, open });
    expect(html).toContain('data-testid="schedule-runs-ping"');
    expect(html).toContain('href="/runs/r_1"');
  });

  it('explains how to create a schedule when there is none, and says why a list failed', () => {
    expect(render({ state: { status: 'loaded', schedules: [] } })).toContain('apex schedules put NAME');
    expect(render({ state: { status: 'error', message: 'forbidden' } })).toContain('Could not list schedules: forbidden');
  });

  it('describes timings', () => {
    expect(describeTiming({ cron: '*/5 * * * *' })).toBe('*/5 * * * * (UTC)');
    expect(describeTiming({ every_s: 2 })).toBe('every 2 s');
  });
});

describe('TemplatesView', () => {
  const template: Template = {
    name: 'research',
    version: 2,
    versions: [1, 2],
    params: { topic: { default: 'tides' }, who: {} },
    spec: { tasks: [], params: { topic: { default: 'tides' }, who: {} } },
    created_at_ms: 1,
    created_by: 'admin',
  };

  it('lists templates with versions and parameters', () => {
    const html = renderToStaticMarkup(createElement(TemplatesView, { state: { status: 'loaded', templates: [template] } }));
    expect(html).toContain('data-testid="template-row-research"');
    expect(html).toContain('topic = &quot;tides&quot;, who (required)');
  });

  it('describes parameters, a dash for none', () => {
    expect(describeParams({})).toBe('—');
    expect(describeParams({ n: { default: 3 } })).toBe('n = 3');
  });
});
