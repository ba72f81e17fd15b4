import { describe, expect, it } from 'vitest';
import { stepPath } from './LineChart';

describe('stepPath', () => {
  const x = (t: number) => t;
  const y = (v: number) => 100 - v;

  it('holds each value until the next sample and carries the last one to the end', () => {
    expect(stepPath([{ t: 0, v: 1 }, { t: 10, v: 5 }], 30, x, y)).toBe('M0.0,99.0H10.0V95.0H30.0');
  });

  it('draws nothing without samples', () => {
    expect(stepPath([], 30, x, y)).toBe('');
  });
});
