// How times, durations and JSON read on screen.

export function formatTime(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return '—';
  const date = new Date(ms);
  const today = new Date();
  const sameDay = date.toDateString() === today.toDateString();
  return sameDay
    ? date.toLocaleTimeString(undefined, { hour12: false })
    : date.toLocaleString(undefined, { hour12: false });
}

export function formatDuration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
  if (ms < 0) ms = 0;
  if (ms < 1_000) return `${Math.round(ms)} ms`;
  const s = ms / 1_000;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${Math.floor(s % 60)}s`;
  const h = Math.floor(m / 60);
  return `${h}h ${m % 60}m`;
}

export function span(start: number | null | undefined, end: number | null | undefined, now: number): number | null {
  if (start === null || start === undefined) return null;
  return (end ?? now) - start;
}

export function formatAgo(ms: number | null | undefined, now: number): string {
  if (ms === null || ms === undefined) return '—';
  const d = Math.max(0, now - ms);
  if (d < 1_000) return 'just now';
  // Whole seconds: this is read at a glance and re-rendered every second.
  if (d < 60_000) return `${Math.floor(d / 1_000)} s ago`;
  return `${formatDuration(d)} ago`;
}

/** Pretty JSON, cut short past `limit` characters so a huge output cannot freeze the page. */
export function formatJson(value: unknown, limit = 100_000): { text: string; truncated: boolean } {
  let text: string;
  try {
    text = JSON.stringify(value, null, 2) ?? 'null';
  } catch {
    text = String(value);
  }
  return text.length > limit ? { text: text.slice(0, limit), truncated: true } : { text, truncated: false };
}
