// Templates and schedules (docs/API.md, "Running it every day").

import { request } from './client';
import type { RunSummary } from './types';

export interface Template {
  name: string;
  version: number;
  versions: number[];
  params: Record<string, { default?: unknown; description?: string }>;
  created_at_ms: number;
  created_by: string;
}

export interface Schedule {
  name: string;
  template: string;
  version?: number;
  params: Record<string, unknown>;
  cron?: string;
  every_s?: number;
  timezone?: string;
  paused: boolean;
  overlap: 'skip' | 'allow';
  catch_up: boolean;
  created_at_ms: number;
  updated_at_ms: number;
  last_tick_ms: number | null;
  next_fire_ms: number | null;
  /** Only on `GET /api/v1/schedules/{name}`. */
  recent_runs?: RunSummary[];
}

const enc = encodeURIComponent;

export const dailyApi = {
  listTemplates: (signal?: AbortSignal) => request<{ templates: Template[] }>('GET', '/api/v1/templates', undefined, signal),
  listSchedules: (signal?: AbortSignal) => request<{ schedules: Schedule[] }>('GET', '/api/v1/schedules', undefined, signal),
  getSchedule: (name: string, signal?: AbortSignal) => request<Schedule>('GET', `/api/v1/schedules/${enc(name)}`, undefined, signal),
  pauseSchedule: (name: string) => request<Schedule>('POST', `/api/v1/schedules/${enc(name)}/pause`),
  resumeSchedule: (name: string) => request<Schedule>('POST', `/api/v1/schedules/${enc(name)}/resume`),
};

/** `0 9 * * 1 (Europe/Paris)` or `every 30 s`. */
export function describeTiming(s: Pick<Schedule, 'cron' | 'every_s' | 'timezone'>): string {
  if (s.cron) return `${s.cron} (${s.timezone ?? 'UTC'})`;
  if (s.every_s) return `every ${s.every_s} s`;
  return '—';
}
