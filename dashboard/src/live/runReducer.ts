// Live state of one run: a pure reducer from server frames to the view the run page draws.
// A snapshot replaces everything; an `events` frame (one coalesced burst) is applied in a
// single step, copying each touched collection once per batch rather than once per event,
// so a 5,000-task run under load stays cheap.

import {
  TASK_STATES,
  TERMINAL_TASK_STATES,
  type LiveEvent,
  type Run,
  type RunState,
  type RunSummary,
  type StateCounts,
  type StoredEvent,
  type Task,
  type TaskState,
} from '../api/types';

/** What the graph is drawn from: changes only when the run's task set does. */
export interface TaskSpec {
  id: string;
  handler: string;
  depends_on: string[];
}

export interface RunView {
  summary: RunSummary | null;
  tasks: Record<string, Task>;
  /** Task ids in submission order. */
  order: string[];
  /** Kept by reference across snapshots of the same DAG, so layout is not redone. */
  specs: TaskSpec[];
  /** Highest stored-event seq applied; events at or below it are duplicates of a resume. */
  lastSeq: number;
  /** Per task, bumped by each of its stored events (transitions, logs): a detail view refetches on change. */
  touched: Record<string, number>;
}

export type RunAction =
  | { type: 'snapshot'; run: Run; seq: number }
  | { type: 'events'; events: LiveEvent[] }
  /** A RunSummary from a cancel/retry answer: may move the run's state ahead of its events. */
  | { type: 'summary'; run: RunSummary };

export const emptyRunView: RunView = { summary: null, tasks: {}, order: [], specs: [], lastSeq: -1, touched: {} };

const TASK_STATE_SET: ReadonlySet<string> = new Set(TASK_STATES);
const RUN_STATE_SET: ReadonlySet<string> = new Set(['running', 'succeeded', 'failed', 'cancelled']);

export function zeroCounts(): StateCounts {
  return { pending: 0, ready: 0, queued: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0, skipped: 0 };
}

export function countStates(tasks: Iterable<Task>): StateCounts {
  const counts = zeroCounts();
  for (const task of tasks) counts[task.state] += 1;
  return counts;
}

function sameSpecs(a: TaskSpec[], b: Task[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    const deps = y.depends_on ?? [];
    if (x.id !== y.id || x.handler !== y.handler || x.depends_on.length !== deps.length) return false;
    for (let j = 0; j < deps.length; j++) if (x.depends_on[j] !== deps[j]) return false;
  }
  return true;
}

function applySnapshot(state: RunView, run: Run, seq: number): RunView {
  // A snapshot older than what we have (a slow REST answer racing the socket) would undo events.
  if (state.summary?.id === run.id && seq < state.lastSeq) return state;
  const { tasks: taskList, ...summary } = run;
  const tasks: Record<string, Task> = {};
  // Optional fields may be left out on the wire; the views rely on these two being there.
  for (const task of taskList) tasks[task.id] = { ...task, depends_on: task.depends_on ?? [], progress: task.progress ?? null };
  const keepSpecs = state.summary?.id === run.id && sameSpecs(state.specs, taskList);
  const specs = keepSpecs
    ? state.specs
    : taskList.map((t) => ({ id: t.id, handler: t.handler, depends_on: t.depends_on ?? [] }));
  return {
    summary: { ...summary, counts: countStates(taskList), last_seq: seq },
    tasks,
    order: keepSpecs ? state.order : taskList.map((t) => t.id),
    specs,
    lastSeq: seq,
    touched: state.summary?.id === run.id ? state.touched : {},
  };
}

/** The task after a transition event; timings follow the lifecycle in docs/API.md. */
export function transitionTask(task: Task, event: StoredEvent): Task {
  const next = event.state as TaskState;
  const at = event.at_ms;
  const moved: Task = { ...task, state: next };
  if (event.attempt !== undefined && event.attempt !== null) moved.attempt = event.attempt;
  if (event.worker_id) moved.worker_id = event.worker_id;
  switch (next) {
    case 'pending':
    case 'ready':
      // A retried run sends finished tasks back here: their last outcome no longer holds.
      moved.queued_at_ms = null;
      moved.started_at_ms = null;
      moved.finished_at_ms = null;
      moved.progress = null;
      moved.progress_message = null;
      break;
    case 'queued':
      moved.queued_at_ms = at;
      moved.started_at_ms = null;
      moved.finished_at_ms = null;
      break;
    case 'running':
      moved.started_at_ms = at;
      moved.finished_at_ms = null;
      moved.progress = null;
      moved.progress_message = null;
      break;
    default:
      moved.finished_at_ms = at;
      if (next === 'succeeded') moved.error = null;
      else if (event.error) moved.error = event.error;
  }
  return moved;
}

function applyEvents(state: RunView, events: LiveEvent[]): RunView {
  const summary0 = state.summary;
  if (!summary0) return state;
  let summary = summary0;
  let tasks = state.tasks;
  let touched = state.touched;
  let counts = summary0.counts;
  let lastSeq = state.lastSeq;
  let changed = false;
  let tasksCopied = false;
  let touchedCopied = false;
  let countsCopied = false;

  const writableTasks = () => {
    if (!tasksCopied) {
      tasks = { ...tasks };
      tasksCopied = true;
    }
    return tasks;
  };
  const touch = (taskId: string) => {
    if (!touchedCopied) {
      touched = { ...touched };
      touchedCopied = true;
    }
    touched[taskId] = (touched[taskId] ?? 0) + 1;
  };
  const moveCount = (from: TaskState, to: TaskState) => {
    if (from === to) return;
    if (!countsCopied) {
      counts = { ...counts };
      countsCopied = true;
    }
    counts[from] -= 1;
    counts[to] += 1;
  };

  for (const event of events) {
    if (event.kind === 'progress') {
      if (event.run_id !== summary0.id) continue;
      const task = tasks[event.task_id];
      if (!task || event.attempt < task.attempt) continue;
      writableTasks()[event.task_id] = { ...task, progress: event.progress, progress_message: event.message };
      changed = true;
      continue;
    }
    if (event.kind !== 'task' && event.kind !== 'run' && event.kind !== 'log') continue;
    if (event.run_id !== summary0.id || event.seq <= lastSeq) continue;
    lastSeq = event.seq;
    changed = true;
    if (event.kind === 'run') {
      if (event.state && RUN_STATE_SET.has(event.state)) summary = runMoved(summary, event.state as RunState, event.at_ms);
      continue;
    }
    if (!event.task_id) continue;
    touch(event.task_id);
    if (event.kind === 'log') continue;
    const task = tasks[event.task_id];
    if (!task || !event.state || !TASK_STATE_SET.has(event.state)) continue;
    const moved = transitionTask(task, event);
    moveCount(task.state, moved.state);
    writableTasks()[event.task_id] = moved;
  }

  if (!changed) return state;
  return { ...state, summary: { ...summary, counts, last_seq: Math.max(summary.last_seq, lastSeq) }, tasks, touched, lastSeq };
}

function runMoved(summary: RunSummary, next: RunState, at: number): RunSummary {
  if (summary.state === next) return summary;
  return { ...summary, state: next, finished_at_ms: next === 'running' ? null : (summary.finished_at_ms ?? at) };
}

function applySummary(state: RunView, run: RunSummary): RunView {
  const current = state.summary;
  if (!current || current.id !== run.id) return state;
  // An answer older than the events we applied (a cancel acknowledged as `running` after
  // the socket already said `cancelled`) would move the run backwards.
  if (run.last_seq < state.lastSeq || run.state === current.state) return state;
  // Counts and the seq cursor stay ours: they must agree with the task states we hold, and
  // the events behind this summary will still arrive (and be counted) over the socket.
  return {
    ...state,
    summary: { ...current, state: run.state, finished_at_ms: run.finished_at_ms, error: run.error },
  };
}

export function runReducer(state: RunView, action: RunAction): RunView {
  switch (action.type) {
    case 'snapshot':
      return applySnapshot(state, action.run, action.seq);
    case 'events':
      return applyEvents(state, action.events);
    case 'summary':
      return applySummary(state, action.run);
  }
}

/** Tasks finished one way or another: the numerator of a run's progress. */
export function doneCount(counts: StateCounts): number {
  let done = 0;
  for (const state of TERMINAL_TASK_STATES) done += counts[state];
  return done;
}
