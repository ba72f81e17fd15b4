import { describe, expect, it } from 'vitest';
import { parseRoute } from './router';

describe('parseRoute', () => {
  it('maps paths to pages', () => {
    expect(parseRoute('/')).toEqual({ page: 'runs' });
    expect(parseRoute('/runs')).toEqual({ page: 'runs' });
    expect(parseRoute('/runs/r_01%2Fx')).toEqual({ page: 'run', runId: 'r_01/x' });
    expect(parseRoute('/workers/')).toEqual({ page: 'workers' });
    expect(parseRoute('/queues')).toEqual({ page: 'queues' });
    expect(parseRoute('/agents')).toEqual({ page: 'agents' });
    expect(parseRoute('/submit')).toEqual({ page: 'submit' });
    expect(parseRoute('/templates')).toEqual({ page: 'templates' });
    expect(parseRoute('/schedules')).toEqual({ page: 'schedules' });
    expect(parseRoute('/nope/x')).toEqual({ page: 'not_found', path: '/nope/x' });
  });
});
