import { describe, expect, it } from 'vitest';
import { visibleRows } from './windowing';

describe('visibleRows', () => {
  it('covers the viewport plus the overscan on both sides', () => {
    expect(visibleRows(0, 320, 32, 100_000, 5)).toEqual({ start: 0, end: 15 });
    expect(visibleRows(3_200, 320, 32, 100_000, 5)).toEqual({ start: 95, end: 115 });
  });

  it('stays within the list when scrolled past its end or the list is short', () => {
    expect(visibleRows(1_000_000, 320, 32, 50, 5)).toEqual({ start: 50, end: 50 });
    expect(visibleRows(0, 320, 32, 3, 5)).toEqual({ start: 0, end: 3 });
    expect(visibleRows(0, 320, 32, 0, 5)).toEqual({ start: 0, end: 0 });
  });

  it('counts a partly visible row as visible', () => {
    expect(visibleRows(16, 32, 32, 10, 0)).toEqual({ start: 0, end: 2 });
  });
});
