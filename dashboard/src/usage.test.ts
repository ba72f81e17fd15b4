import { describe, expect, it } from 'vitest';
import { formatCost, formatTokens, formatUsage, formatUsageLong, hasUsage, laterUsage, sumUsage } from './usage';

const usage = (input_tokens: number, output_tokens: number, cost_usd: number) => ({ input_tokens, output_tokens, cost_usd });

describe('usage', () => {
  it('shows nothing for missing or all-zero usage', () => {
    expect(hasUsage(undefined)).toBe(false);
    expect(hasUsage(usage(0, 0, 0))).toBe(false);
    expect(hasUsage(usage(0, 0, 0.01))).toBe(true);
    expect(formatUsage(null)).toBe('');
    expect(formatUsageLong(usage(0, 0, 0))).toBe('');
  });

  it('reads compactly on nodes and in full in panels', () => {
    expect(formatUsage(usage(120, 40, 0.000042))).toBe('160 tok · $0.000042');
    expect(formatUsage(usage(9_000, 3_400, 0))).toBe('12k tok');
    expect(formatUsageLong(usage(12_000, 40, 1.5))).toBe('12,000 in · 40 out tokens · $1.50');
  });

  it('writes tokens and dollars with the digits that matter', () => {
    expect(formatTokens(999)).toBe('999');
    expect(formatTokens(1_234)).toBe('1.2k');
    expect(formatTokens(4_100_000)).toBe('4.1M');
    expect(formatCost(0)).toBe('$0');
    expect(formatCost(0.0042)).toBe('$0.0042');
    expect(formatCost(0.042)).toBe('$0.042');
    expect(formatCost(0.25)).toBe('$0.25');
    expect(formatCost(0.5)).toBe('$0.50');
    expect(formatCost(0.0001)).toBe('$0.0001');
    expect(formatCost(12.4)).toBe('$12.40');
    expect(formatCost(1e-9)).toBe('<$0.000001');
  });

  it('sums and keeps the later (larger) reading', () => {
    expect(sumUsage([usage(1, 2, 0.5), undefined, usage(3, 4, 0.25)])).toEqual(usage(4, 6, 0.75));
    expect(laterUsage(usage(10, 0, 0), usage(5, 0, 0))).toEqual(usage(10, 0, 0));
    expect(laterUsage(undefined, usage(5, 0, 0))).toEqual(usage(5, 0, 0));
    expect(laterUsage(usage(5, 0, 0.1), usage(5, 0, 0.2))).toEqual(usage(5, 0, 0.2));
  });
});
