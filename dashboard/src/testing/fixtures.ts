// Builders for API shapes in unit tests: each fills every field the server sends (as the
// OpenAPI document states it) with a plausible value and takes the fields a test cares
// about.

import type { Queue, Run, RunSummary, StoredEvent, Task, Worker } from '../api/types';

export function task(id: string, fields: Partial<Task> = {}): Task {
  return {
    id,
    handler: 'echo',
    queue: 'default',
    input: null,
    depends_on: [],
    trigger: 'all_success',
    retries: 0,
    retry_backoff_s: null,
    timeout_s: null,
    idle_timeout_s: null,
    priority: 0,
    agent: null,
    parent: null,
    concurrency_key: null,
    budget: null,
    usage: { input_tokens: 0, output_tokens: 0, cost_usd: 0 },
    state: 'pending',
    attempt: 0,
    output: null,
    error: null,
    worker_id: null,
    queued_at_ms: null,
    started_at_ms: null,
    finished_at_ms: null,
    progress: null,
    progress_message: null,
    waiting_for: null,
    ...fields,
  };
}

export function summary(id: string, fields: Partial<RunSummary> = {}): RunSummary {
  return {
    id,
    name: 'test-run',
    queue: 'default',
    state: 'running',
    created_at_ms: 1_000,
    finished_at_ms: null,
    task_count: 0,
    counts: { pending: 0, ready: 0, queued: 0, running: 0, waiting: 0, succeeded: 0, failed: 0, cancelled: 0, skipped: 0 },
    error: null,
    last_seq: 0,
    usage: { input_tokens: 0, output_tokens: 0, cost_usd: 0 },
    budget: null,
    max_parallel: null,
    created_by: 'admin',
    template: null,
    schedule: null,
    schedule_tick_ms: null,
    hook: null,
    ttl_s: null,
    rerun_of: null,
    ...fields,
  };
}

export function run(id: string, tasks: Task[], fields: Partial<RunSummary> = {}): Run {
  return { ...summary(id, { task_count: tasks.length, ...fields }), history: [], tasks };
}

export function taskEvent(runId: string, seq: number, taskId: string, state: string, fields: Partial<StoredEvent> = {}): StoredEvent {
  return { seq, run_id: runId, task_id: taskId, kind: 'task', state, attempt: 1, at_ms: 10_000 + seq, worker_id: null, error: null, ...fields };
}

/** A run's own transition: attempt 0 and no task, as the server stores it. */
export function runEvent(runId: string, seq: number, state: string, fields: Partial<StoredEvent> = {}): StoredEvent {
  return { seq, run_id: runId, task_id: null, kind: 'run', state, attempt: 0, at_ms: 10_000 + seq, worker_id: null, error: null, ...fields };
}

/** A log line of a task's attempt: no state. */
export function logEvent(runId: string, seq: number, taskId: string, message: string, fields: Partial<StoredEvent> = {}): StoredEvent {
  return {
    seq,
    run_id: runId,
    task_id: taskId,
    kind: 'log',
    state: null,
    attempt: 1,
    at_ms: 10_000 + seq,
    worker_id: null,
    error: null,
    level: 'info',
    message,
    ...fields,
  };
}

export function worker(id: string, fields: Partial<Worker> = {}): Worker {
  return {
    id,
    host: 'host',
    pid: 42,
    queues: ['default'],
    concurrency: 50,
    in_flight: 0,
    handlers: ['echo'],
    version: '0.1.0',
    state: 'running',
    started_at_ms: 1,
    last_heartbeat_ms: 2,
    heartbeat_interval_s: 2,
    ...fields,
  };
}

export function queue(name: string, fields: Partial<Queue> = {}): Queue {
  return { name, depth: 0, running: 0, workers_active: 1, workers_desired: 1, ...fields };
}
