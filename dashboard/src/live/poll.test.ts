import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createPoller } from './poll';

describe('createPoller', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('fetches at once, then once per interval with no request, until closed', async () => {
    const results: number[] = [];
    let n = 0;
    const fetch = vi.fn(() => Promise.resolve(++n));
    const poller = createPoller({ fetch, onResult: (v) => results.push(v), intervalMs: 3_000, now: () => Date.now() });
    await vi.advanceTimersByTimeAsync(0);
    expect(fetch).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(2_999);
    expect(fetch).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(10);
    expect(fetch).toHaveBeenCalledTimes(2);
    await vi.advanceTimersByTimeAsync(6_000);
    expect(results).toEqual([1, 2, 3, 4]);
    poller.close();
    await vi.advanceTimersByTimeAsync(9_000);
    expect(fetch).toHaveBeenCalledTimes(4);
  });

  it('never starts a second fetch while one is in flight', async () => {
    let resolve: (v: number) => void = () => {};
    const fetch = vi.fn(() => new Promise<number>((r) => (resolve = r)));
    const poller = createPoller({ fetch, onResult: () => {}, intervalMs: 1_000, now: () => Date.now() });
    await vi.advanceTimersByTimeAsync(5_000);
    expect(fetch).toHaveBeenCalledTimes(1);
    resolve(1);
    await vi.advanceTimersByTimeAsync(0);
    expect(fetch).toHaveBeenCalledTimes(2);
    poller.close();
  });
});
