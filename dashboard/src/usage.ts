// LLM usage (tokens and dollars): sums over tasks, and how it reads on screen. The
// server always sends usage (zero when nothing was used); these functions also take a
// missing one, so a half-built value (a test's, a live event's) never throws.

import type { Usage } from './api/types';

export const ZERO_USAGE: Usage = { input_tokens: 0, output_tokens: 0, cost_usd: 0 };

export function totalTokens(usage: Usage | null | undefined): number {
  return (usage?.input_tokens ?? 0) + (usage?.output_tokens ?? 0);
}

/** Whether there is anything worth showing: some tokens or some cost. */
export function hasUsage(usage: Usage | null | undefined): usage is Usage {
  return !!usage && (totalTokens(usage) > 0 || (usage.cost_usd ?? 0) > 0);
}

export function addUsage(total: Usage, more: Usage | null | undefined): Usage {
  if (!more) return total;
  return {
    input_tokens: total.input_tokens + (more.input_tokens ?? 0),
    output_tokens: total.output_tokens + (more.output_tokens ?? 0),
    cost_usd: total.cost_usd + (more.cost_usd ?? 0),
  };
}

export function sumUsage(usages: Iterable<Usage | null | undefined>): Usage {
  let total = ZERO_USAGE;
  for (const usage of usages) total = addUsage(total, usage);
  return total;
}

/**
 * The newer of two readings of the same usage. Usage only grows (it sums attempts), so
 * the larger one is the later one: a slow answer can never take a task's usage back.
 */
export function laterUsage(a: Usage, b: Usage): Usage;
export function laterUsage(a: Usage | null | undefined, b: Usage | null | undefined): Usage | null | undefined;
export function laterUsage(a: Usage | null | undefined, b: Usage | null | undefined): Usage | null | undefined {
  if (!a) return b;
  if (!b) return a;
  const ta = totalTokens(a);
  const tb = totalTokens(b);
  if (ta !== tb) return ta > tb ? a : b;
  return (b.cost_usd ?? 0) > (a.cost_usd ?? 0) ? b : a;
}

/** `850`, `12.3k`, `4.1M`. */
export function formatTokens(n: number): string {
  if (n < 1_000) return String(Math.round(n));
  if (n < 1_000_000) return `${(n / 1_000).toFixed(n < 10_000 ? 1 : 0)}k`;
  return `${(n / 1_000_000).toFixed(n < 10_000_000 ? 1 : 0)}M`;
}

/** Dollars with the digits that matter: `$12.40`, `$0.25`, `$0.042`, `$0.000042`. */
export function formatCost(usd: number): string {
  if (!(usd > 0) || !Number.isFinite(usd)) return '$0';
  if (usd >= 100) return `$${usd.toFixed(0)}`;
  if (usd >= 1) return `$${usd.toFixed(2)}`;
  if (usd < 0.000001) return '<$0.000001';
  // Two significant digits, at least cents, written out (toPrecision would switch to
  // exponents) without trailing zeros.
  const decimals = Math.min(6, Math.max(2, 1 - Math.floor(Math.log10(usd))));
  const [whole, fraction = ''] = usd.toFixed(decimals).split('.');
  return `$${whole}.${fraction.replace(/0+$/, '').padEnd(2, '0')}`;
}

/** Compact, for nodes and table cells: `1.2k tok · $0.004`, or '' when there is none. */
export function formatUsage(usage: Usage | null | undefined): string {
  if (!hasUsage(usage)) return '';
  const parts = [`${formatTokens(totalTokens(usage))} tok`];
  if ((usage.cost_usd ?? 0) > 0) parts.push(formatCost(usage.cost_usd));
  return parts.join(' · ');
}

/** Spelled out, for the side panel and the run header: `120 in · 40 out tokens · $0.000042`. */
export function formatUsageLong(usage: Usage | null | undefined): string {
  if (!hasUsage(usage)) return '';
  const n = (x: number) => Math.round(x).toLocaleString('en-US');
  return `${n(usage.input_tokens ?? 0)} in · ${n(usage.output_tokens ?? 0)} out tokens · ${formatCost(usage.cost_usd ?? 0)}`;
}
