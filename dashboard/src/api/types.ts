// The wire shapes of docs/API.md, v1. Field names follow the server's JSON exactly so
// responses are used as they arrive, without a mapping layer. Shapes the server's
// OpenAPI document describes one to one are aliases of `schema.gen.ts`, generated from
// it (`npm run gen:api`); the rest narrow it (state unions, live frames).

import type { components } from './schema.gen';

/** The schemas of the generated OpenAPI document. */
export type Schemas = components['schemas'];

// `waiting` (a task held for a person: an approval, or a budget that asks) is listed
// before servers send it, so a run holding one never miscounts.
export const TASK_STATES = [
  'pending',
  'ready',
  'queued',
  'running',
  'waiting',
  'succeeded',
  'failed',
  'cancelled',
  'skipped',
] as const;
export type TaskState = (typeof TASK_STATES)[number];

export const TERMINAL_TASK_STATES: ReadonlySet<TaskState> = new Set([
  'succeeded',
  'failed',
  'cancelled',
  'skipped',
]);

export const RUN_STATES = ['running', 'succeeded', 'failed', 'cancelled'] as const;
export type RunState = (typeof RUN_STATES)[number];

export type StateCounts = Record<TaskState, number>;

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export interface TaskError {
  kind: string;
  error_type?: string | null;
  message?: string | null;
  traceback?: string | null;
}

export type Usage = Schemas['Usage'];

export interface RunSummary {
  id: string;
  name: string;
  queue: string;
  state: RunState;
  created_at_ms: number;
  finished_at_ms: number | null;
  task_count: number;
  counts: StateCounts;
  error: string | TaskError | null;
  last_seq: number;
  usage?: Usage | null;
  /** The API token that submitted the run (`admin`, a scoped token's name, `anonymous`). */
  created_by?: string | null;
  /** The run's own events (created, cancelled, retried), each with the token that caused it. */
  history?: StoredEvent[];
  /** The run this one re-ran from chosen tasks (`POST /runs/{id}/rerun`), if any. */
  rerun_of?: { run: string; from: string[] } | null;
}

export interface Task {
  id: string;
  handler: string;
  queue: string;
  input: Json;
  depends_on: string[];
  trigger: string;
  retries: number;
  retry_backoff_s: number | null;
  timeout_s: number | null;
  priority: number | null;
  state: TaskState;
  attempt: number;
  output: Json;
  error: TaskError | null;
  worker_id: string | null;
  queued_at_ms: number | null;
  started_at_ms: number | null;
  finished_at_ms: number | null;
  progress: number | null;
  progress_message: string | null;
  /** The agent that runs this task (agent handler only). */
  agent?: string | null;
  /** The task that spawned this one by dynamic fan-out; its id is `PARENT.CHILD`. */
  parent?: string | null;
  usage?: Usage | null;
  /** The task's own budget, if it has one. */
  budget?: Budget | null;
  /** What a `waiting` task waits for: a person's approval, or a budget raise. */
  waiting_for?: 'approval' | 'budget' | null;
}

export interface Run extends RunSummary {
  tasks: Task[];
}

/** `GET /api/v1/runs/{id}/tasks`: a run's tasks by id, a page at a time. */
export interface TaskPage {
  tasks: Task[];
  /** The `after` of the next page; null on the last one. */
  next_after: string | null;
}

export interface TaskPageQuery {
  /** Only tasks in these states; all when empty. */
  states?: readonly TaskState[];
  /** Tasks with ids after this one. */
  after?: string | null;
  /** Page size: the server's default is 500, its maximum 5,000. */
  limit?: number;
}

export type Attempt = Schemas['Attempt'];

export interface LogLine {
  attempt: number;
  level: string;
  message: string;
  at_ms: number;
}

export interface TaskDetail extends Task {
  run_id: string;
  upstream: Record<string, Json>;
  attempts: Attempt[];
  logs: LogLine[];
  events: StoredEvent[];
}

export type WorkerState = 'running' | 'draining' | 'stopped' | 'lost';

export interface Worker {
  id: string;
  host: string;
  pid: number;
  queues: string[];
  concurrency: number;
  in_flight: number;
  handlers: string[];
  version: string;
  state: WorkerState;
  started_at_ms: number;
  last_heartbeat_ms: number;
}

export type Queue = Schemas['Queue'];

/** An event as stored: task transitions, run transitions and log lines, each with a per-run seq. */
export interface StoredEvent {
  seq: number;
  run_id: string;
  task_id: string | null;
  kind: 'task' | 'run' | 'log';
  state?: string | null;
  attempt?: number | null;
  at_ms: number;
  worker_id?: string | null;
  error?: TaskError | null;
  message?: string | null;
  level?: string | null;
  /** The API token whose request caused this event (submit, cancel, retry). */
  by?: string | null;
}

export interface ProgressEvent {
  kind: 'progress';
  run_id: string;
  task_id: string;
  attempt: number;
  progress: number | null;
  message: string | null;
  /** Streamed model text: the attempt's answer so far is the concatenation of its deltas. */
  text_delta?: string | null;
  at_ms: number;
}

/**
 * The text a task's running attempt streamed before this client joined, sent once on
 * (re)connecting; the `text_delta`s that follow continue it. Past the server's buffer
 * the oldest text is left out and counted in `dropped_bytes`.
 */
export interface AnswerEvent {
  kind: 'answer';
  run_id: string;
  task_id: string;
  attempt: number;
  text: string;
  dropped_bytes: number;
}

export interface RunCreatedEvent {
  kind: 'run_created';
  run: RunSummary;
  seq: number;
}

export interface RunUpdatedEvent {
  kind: 'run_updated';
  run: RunSummary;
  seq: number;
}

export interface WorkerEvent {
  kind: 'worker';
  worker: Worker;
}

export interface QueuesEvent {
  kind: 'queues';
  queues: Queue[];
}

export type LiveEvent =
  | StoredEvent
  | ProgressEvent
  | AnswerEvent
  | RunCreatedEvent
  | RunUpdatedEvent
  | WorkerEvent
  | QueuesEvent;

export interface RunSnapshotFrame {
  type: 'snapshot';
  run: Run;
  seq: number;
}

export interface OverviewSnapshotFrame {
  type: 'snapshot';
  runs: RunSummary[];
  workers: Worker[];
  queues: Queue[];
  seq: number;
}

export interface EventsFrame {
  type: 'events';
  /**
   * The stored events this frame accounts for (run seqs on a run's stream, bus seqs on the
   * fleet's): each is in `events` or was superseded by a later one of its task that is.
   * Resuming with `since=seq_to` is exact. Absent on frames of live-only events.
   */
  seq_from?: number;
  seq_to?: number;
  /** A run's stream: the run's latest summary (counts), when it changed. */
  run?: RunSummary;
  events: LiveEvent[];
}

export interface ResyncFrame {
  type: 'resync';
  reason?: string;
}

export type ServerFrame = RunSnapshotFrame | OverviewSnapshotFrame | EventsFrame | ResyncFrame;

export type AgentPrice = Schemas['Price'];

/** An agent in the registry (`GET /api/v1/agents`); unset settings are null. */
export interface Agent {
  name: string;
  provider: string;
  model: string;
  base_url: string | null;
  api_key_env: string | null;
  system_prompt: string | null;
  temperature: number | null;
  max_output_tokens: number | null;
  max_concurrency: number | null;
  price: AgentPrice | null;
  created_at_ms: number;
  updated_at_ms: number;
}

export interface ErrorDetail {
  code: string;
  message: string;
  tasks?: string[];
  [extra: string]: unknown;
}

export interface ErrorBody {
  error: { code: string; message: string; details?: ErrorDetail[] };
}

export interface RunList {
  runs: RunSummary[];
  next: string | null;
}

/** The body of an approve or reject decision (docs/API.md, "People in the loop"). */
export interface DecisionBody {
  comment?: string;
  output?: unknown;
  /** For a task waiting on a budget: the new limits of the budget it waits on. */
  raise?: BudgetRaise;
}

/** New limits for the budget a waiting task asks about; each above the current one. */
export interface BudgetRaise {
  max_cost_usd?: number;
  max_tokens?: number;
}

/** A spending limit (`on_exceeded: "ask"`: a task it cannot cover waits for a raise). */
export interface Budget {
  max_tokens?: number;
  max_cost_usd?: number;
  on_exceeded?: 'fail' | 'ask';
}

/** The body of `POST /api/v1/runs/{id}/rerun`. */
export interface RerunBody {
  from: string[];
  overrides?: {
    agents?: Record<string, Record<string, unknown>>;
    tasks?: Record<string, { input: unknown }>;
  };
}
