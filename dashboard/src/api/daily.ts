// Templates and schedules (docs/API.md, "Running it every day").

import { request } from './client';
import type { Schemas } from './types';

/** One version of a template, with the versions it has. */
export type Template = Schemas['Template'];

/** A stored schedule with its next fire time (and, from `getSchedule`, its recent runs). */
export type Schedule = Schemas['Schedule'];

const enc = encodeURIComponent;

export const dailyApi = {
  listTemplates: (signal?: AbortSignal) => request<Schemas['TemplateList']>('GET', '/api/v1/templates', undefined, signal),
  listSchedules: (signal?: AbortSignal) => request<Schemas['ScheduleList']>('GET', '/api/v1/schedules', undefined, signal),
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
