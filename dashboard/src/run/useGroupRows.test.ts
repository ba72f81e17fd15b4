import { describe, expect, it } from 'vitest';
import { GROUP_REFRESH_MS, groupRefreshMs } from './useGroupRows';

describe('groupRefreshMs', () => {
  it('reads a few thousand tasks every few seconds and 100,000 every ten', () => {
    expect(groupRefreshMs(3_000)).toBe(GROUP_REFRESH_MS);
    expect(groupRefreshMs(100_000)).toBe(10_000);
  });
});
