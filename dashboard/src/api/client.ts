// REST client for docs/API.md. Relative URLs: the server serves the dashboard and the
// API on one origin (and Vite proxies /api in development).

import { getToken, markUnauthorized } from './auth';
import type {
  AgentList,
  DecidedTask,
  DecisionBody,
  ErrorDetail,
  ErrorResponse,
  QueueList,
  RerunBody,
  Run,
  RunList,
  RunState,
  RunSummary,
  RunWithoutTasks,
  TaskDetail,
  TaskPage,
  TaskPageQuery,
  Validation,
  WorkerList,
} from './types';

/** The code of an ApiError for a 2xx answer that is not JSON (no such endpoint on this server). */
export const NOT_JSON = 'not_json';

/** A non-2xx answer, carrying the API's error body when there was one. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly details: ErrorDetail[];

  constructor(status: number, code: string, message: string, details: ErrorDetail[] = []) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

function isErrorResponse(value: unknown): value is ErrorResponse {
  if (typeof value !== 'object' || value === null) return false;
  const error = (value as { error?: unknown }).error;
  return typeof error === 'object' && error !== null && typeof (error as { message?: unknown }).message === 'string';
}

async function toApiError(response: Response): Promise<ApiError> {
  const text = await response.text();
  try {
    const body: unknown = JSON.parse(text);
    if (isErrorResponse(body)) {
      const { code, message, details } = body.error;
      return new ApiError(response.status, code ?? 'unknown', message, Array.isArray(details) ? details : []);
    }
  } catch {
    // Not JSON (a proxy's error page, say): fall through and show the status and text.
  }
  const message = text.trim().slice(0, 300) || response.statusText || `HTTP ${response.status}`;
  return new ApiError(response.status, `http_${response.status}`, message);
}

export async function request<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  // The API refuses a body that is not declared JSON (a cross-site form cannot declare
  // it). Bodiless POSTs (cancel, retry) declare it too, in case the server asks it of
  // every write.
  if (body !== undefined || (method !== 'GET' && method !== 'HEAD')) headers['Content-Type'] = 'application/json';
  // A string is sent verbatim, so a pasted DAG reaches the server exactly as typed.
  const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
  const response = await fetch(path, { method, headers, body: payload, signal });
  if (response.status === 401) markUnauthorized();
  if (!response.ok) throw await toApiError(response);
  if (response.status === 204) return undefined as T;
  // An /api path the server does not route may come back as the dashboard's index.html.
  const type = response.headers.get('Content-Type') ?? '';
  if (!type.includes('json')) throw new ApiError(response.status, NOT_JSON, `${path} answered ${type || 'no content type'}, not JSON`);
  return (await response.json()) as T;
}

const enc = encodeURIComponent;

export const api = {
  listRuns(params: { state?: RunState | ''; limit?: number; before?: string | null }, signal?: AbortSignal) {
    const query = new URLSearchParams();
    if (params.state) query.set('state', params.state);
    if (params.limit) query.set('limit', String(params.limit));
    if (params.before) query.set('before', params.before);
    const qs = query.toString();
    return request<RunList>('GET', `/api/v1/runs${qs ? `?${qs}` : ''}`, undefined, signal);
  },
  getRun: (id: string, signal?: AbortSignal) => request<Run>('GET', `/api/v1/runs/${enc(id)}`, undefined, signal),
  /** The run without its tasks: cheap whatever the run's size. */
  getRunSummary: (id: string, signal?: AbortSignal) =>
    request<RunWithoutTasks>('GET', `/api/v1/runs/${enc(id)}?tasks=false`, undefined, signal),
  /** One page of a run's tasks, ordered by id; servers without the endpoint answer 404 or 405. */
  listTasks(runId: string, params: TaskPageQuery, signal?: AbortSignal) {
    const query = new URLSearchParams();
    if (params.states?.length) query.set('state', params.states.join(','));
    if (params.after) query.set('after', params.after);
    if (params.limit) query.set('limit', String(params.limit));
    if (params.since != null) query.set('since', String(params.since));
    const qs = query.toString();
    return request<TaskPage>('GET', `/api/v1/runs/${enc(runId)}/tasks${qs ? `?${qs}` : ''}`, undefined, signal);
  },
  getTask: (runId: string, taskId: string, signal?: AbortSignal) =>
    request<TaskDetail>('GET', `/api/v1/runs/${enc(runId)}/tasks/${enc(taskId)}`, undefined, signal),
  submitRun: (spec: string) => request<RunSummary>('POST', '/api/v1/runs', spec),
  validate: (spec: string) => request<Validation>('POST', '/api/v1/validate', spec),
  cancelRun: (id: string) => request<RunSummary>('POST', `/api/v1/runs/${enc(id)}/cancel`),
  retryRun: (id: string) => request<RunSummary>('POST', `/api/v1/runs/${enc(id)}/retry`),
  /** A new run from chosen tasks of a finished run; the rest reuse their outputs. */
  rerunFrom: (id: string, body: RerunBody) => request<RunSummary>('POST', `/api/v1/runs/${enc(id)}/rerun`, body),
  approveTask: (runId: string, taskId: string, body: DecisionBody) =>
    request<DecidedTask>('POST', `/api/v1/runs/${enc(runId)}/tasks/${enc(taskId)}/approve`, body),
  rejectTask: (runId: string, taskId: string, body: DecisionBody) =>
    request<DecidedTask>('POST', `/api/v1/runs/${enc(runId)}/tasks/${enc(taskId)}/reject`, body),
  cancelTask: (runId: string, taskId: string) =>
    request<DecidedTask>('POST', `/api/v1/runs/${enc(runId)}/tasks/${enc(taskId)}/cancel`),
  listWorkers: (signal?: AbortSignal) => request<WorkerList>('GET', '/api/v1/workers', undefined, signal),
  listQueues: (signal?: AbortSignal) => request<QueueList>('GET', '/api/v1/queues', undefined, signal),
  listAgents: (signal?: AbortSignal) => request<AgentList>('GET', '/api/v1/agents', undefined, signal),
};
