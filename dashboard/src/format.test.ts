import { describe, expect, it } from 'vitest';
import { formatAgo, formatDuration, formatJson, span } from './format';

describe('format', () => {
  it('prints durations at a useful precision', () => {
    expect(formatDuration(null)).toBe('—');
    expect(formatDuration(42)).toBe('42 ms');
    expect(formatDuration(1_500)).toBe('1.50 s');
    expect(formatDuration(12_340)).toBe('12.3 s');
    expect(formatDuration(125_000)).toBe('2m 5s');
    expect(formatDuration(3_780_000)).toBe('1h 3m');
  });

  it('measures a span up to now while it is open', () => {
    expect(span(null, null, 10)).toBeNull();
    expect(span(2, null, 10)).toBe(8);
    expect(span(2, 5, 10)).toBe(3);
  });

  it('says how long ago in whole seconds', () => {
    expect(formatAgo(1_000, 1_500)).toBe('just now');
    expect(formatAgo(1_000, 3_900)).toBe('2 s ago');
    expect(formatAgo(0, 90_000)).toBe('1m 30s ago');
  });

  it('cuts huge JSON short', () => {
    expect(formatJson({ a: 1 })).toEqual({ text: '{\n  "a": 1\n}', truncated: false });
    expect(formatJson('x'.repeat(50), 10)).toEqual({ text: '"xxxxxxxxx', truncated: true });
  });
});
