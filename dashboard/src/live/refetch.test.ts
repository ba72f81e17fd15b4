import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createRefetcher } from './refetch';

/** A fetch whose answers the test hands out one by one. */
function manualFetch() {
  const calls: { resolve: (v: number) => void; reject: (e: Error) => void }[] = [];
  const fetch = vi.fn(
    () =>
      new Promise<number>((resolve, reject) => {
        calls.push({ resolve, reject });
      }),
  );
  return { fetch, calls };
}

describe('createRefetcher', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('turns a burst of requests into one fetch per interval', async () => {
    const { fetch, calls } = manualFetch();
    const results: number[] = [];
    const refetcher = createRefetcher({ fetch, onResult: (v) => results.push(v), intervalMs: 500, now: () => Date.now() });
    refetcher.request();
    refetcher.request();
    await vi.advanceTimersByTimeAsync(0);
    expect(fetch).toHaveBeenCalledTimes(1);
    calls[0]!.resolve(1);
    await vi.advanceTimersByTimeAsync(0);
    expect(results).toEqual([1]);

    refetcher.request();
    refetcher.request();
    await vi.advanceTimersByTimeAsync(499);
    expect(fetch).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(fetch).toHaveBeenCalledTimes(2);
    refetcher.close();
  });

  it('answers a request made during a fetch with one more fetch after it, without aborting the first', async () => {
    const { fetch, calls } = manualFetch();
    const results: number[] = [];
    const refetcher = createRefetcher({ fetch, onResult: (v) => results.push(v), intervalMs: 500, now: () => Date.now() });
    refetcher.request();
    await vi.advanceTimersByTimeAsync(0);
    refetcher.request();
    refetcher.request();
    await vi.advanceTimersByTimeAsync(800);
    expect(fetch).toHaveBeenCalledTimes(1);
    calls[0]!.resolve(1);
    await vi.advanceTimersByTimeAsync(0);
    expect(fetch).toHaveBeenCalledTimes(2);
    calls[1]!.resolve(2);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(results).toEqual([1, 2]);
    expect(fetch).toHaveBeenCalledTimes(2);
    refetcher.close();
  });

  it('retries a failed fetch a few times, then waits for the next request', async () => {
    const { fetch, calls } = manualFetch();
    const refetcher = createRefetcher({ fetch, onResult: () => {}, intervalMs: 100, maxRetries: 2, now: () => Date.now() });
    refetcher.request();
    for (let i = 0; i < 5; i++) {
      await vi.advanceTimersByTimeAsync(100);
      calls[i]?.reject(new Error('down'));
    }
    await vi.advanceTimersByTimeAsync(1_000);
    expect(fetch).toHaveBeenCalledTimes(3);
    refetcher.close();
  });

  it('does nothing after close', async () => {
    const { fetch } = manualFetch();
    const refetcher = createRefetcher({ fetch, onResult: () => {}, intervalMs: 100, now: () => Date.now() });
    refetcher.close();
    refetcher.request();
    await vi.advanceTimersByTimeAsync(1_000);
    expect(fetch).not.toHaveBeenCalled();
  });
});
