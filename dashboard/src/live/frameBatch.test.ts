import { describe, expect, it } from 'vitest';
import { createFrameBatch } from './frameBatch';

/** Frames and timers the test fires by hand. */
function clock() {
  const frames = new Map<number, () => void>();
  const timers = new Map<number, () => void>();
  let next = 1;
  return {
    frames,
    timers,
    options: {
      requestFrame: (fn: () => void) => (frames.set(next, fn), next++),
      cancelFrame: (h: unknown) => void frames.delete(h as number),
      setTimer: (fn: () => void) => (timers.set(next, fn), next++),
      clearTimer: (h: unknown) => void timers.delete(h as number),
    },
    fire(which: Map<number, () => void>) {
      const fns = [...which.values()];
      which.clear();
      for (const fn of fns) fn();
    },
  };
}

describe('createFrameBatch', () => {
  it('delivers everything pushed before a frame as one batch, in order', () => {
    const c = clock();
    const got: number[][] = [];
    const batch = createFrameBatch<number>((items) => got.push(items), c.options);
    batch.push([1, 2]);
    batch.push([3]);
    expect(got).toEqual([]);
    c.fire(c.frames);
    expect(got).toEqual([[1, 2, 3]]);
    // The timer was cancelled with the frame: nothing more arrives.
    expect(c.timers.size).toBe(0);
    batch.push([4]);
    c.fire(c.frames);
    expect(got).toEqual([[1, 2, 3], [4]]);
  });

  it('flushes on the timer when no frame comes (a hidden tab)', () => {
    const c = clock();
    const got: number[][] = [];
    const batch = createFrameBatch<number>((items) => got.push(items), c.options);
    batch.push([1]);
    c.fire(c.timers);
    expect(got).toEqual([[1]]);
    expect(c.frames.size).toBe(0);
  });

  it('flushes on demand and drops everything on close', () => {
    const c = clock();
    const got: number[][] = [];
    const batch = createFrameBatch<number>((items) => got.push(items), c.options);
    batch.push([1]);
    batch.flush();
    batch.flush();
    expect(got).toEqual([[1]]);
    batch.push([2]);
    batch.close();
    batch.push([3]);
    expect(c.frames.size + c.timers.size).toBe(0);
    expect(got).toEqual([[1]]);
  });

  it('does not hand out the pushed array itself', () => {
    const c = clock();
    const pushed = [1];
    let got: number[] = [];
    const batch = createFrameBatch<number>((items) => (got = items), c.options);
    batch.push(pushed);
    batch.flush();
    expect(got).toEqual([1]);
    expect(got).not.toBe(pushed);
  });
});
