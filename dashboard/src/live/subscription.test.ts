import { describe, expect, it } from 'vitest';
import { socketUrl } from './socket';
import { BIG_RUN_TASKS, MAX_FILTER_TASKS, subscriptionFor, subscriptionKey, subscriptionParams } from './subscription';

const loc = { protocol: 'http:', host: 'h:1' };

describe('subscriptionFor', () => {
  it('follows a small run in full, whatever is on screen', () => {
    expect(subscriptionFor(10, ['a'])).toEqual({ detail: 'tasks' });
    expect(subscriptionFor(BIG_RUN_TASKS, [])).toEqual({ detail: 'tasks' });
  });

  it('follows a big run by summary plus the visible rows', () => {
    const s = subscriptionFor(BIG_RUN_TASKS + 1, ['t9', 't10', 't9']);
    expect(s).toEqual({ detail: 'only', tasks: ['t10', 't9'] });
    expect(subscriptionParams(s)).toEqual({ tasks: 't10,t9' });
  });

  it('asks for the summary only when no row is on screen', () => {
    const s = subscriptionFor(100_000, []);
    expect(s).toEqual({ detail: 'summary' });
    expect(subscriptionParams(s)).toEqual({ detail: 'summary' });
  });

  it('never names more tasks than the server accepts', () => {
    const many = Array.from({ length: MAX_FILTER_TASKS + 50 }, (_, i) => `t${i}`);
    const s = subscriptionFor(100_000, many);
    expect(s.detail === 'only' && s.tasks.length).toBe(MAX_FILTER_TASKS);
  });
});

describe('subscriptionKey', () => {
  it('changes when the user scrolls to other rows, not when the same rows re-render', () => {
    const a = subscriptionKey(subscriptionFor(5_000, ['t1', 't2']));
    expect(subscriptionKey(subscriptionFor(5_000, ['t2', 't1']))).toBe(a);
    expect(subscriptionKey(subscriptionFor(5_000, ['t2', 't3']))).not.toBe(a);
    expect(subscriptionKey(subscriptionFor(5_000, []))).toBe('summary');
  });
});

describe('socketUrl with a subscription', () => {
  it('puts the detail or the task filter in the query', () => {
    const url = socketUrl(loc, { run: 'r1', since: 4, params: subscriptionParams(subscriptionFor(5_000, ['b', 'a'])) });
    const q = new URL(url).searchParams;
    expect(q.get('run')).toBe('r1');
    expect(q.get('since')).toBe('4');
    expect(q.get('tasks')).toBe('a,b');
    expect(new URL(socketUrl(loc, { run: 'r1', params: { detail: 'summary' } })).searchParams.get('detail')).toBe('summary');
    expect(socketUrl(loc, { run: 'r1' })).toBe('ws://h:1/api/v1/ws?run=r1');
  });
});
