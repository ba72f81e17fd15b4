// Live state of the whole server (the global stream): runs, workers, queues, and a bounded
// history of queue samples for the charts. Pure: the caller stamps each action with the
// time it happened, since queue frames carry no timestamp of their own.

import type { LiveEvent, OverviewSnapshotFrame, Queue, RunState, RunSummary, Worker } from '../api/types';

export interface QueueSample {
  at_ms: number;
  queues: Record<string, Queue>;
}

export interface Overview {
  loaded: boolean;
  runs: Record<string, RunSummary>;
  workers: Record<string, Worker>;
  queues: Queue[];
  history: QueueSample[];
}

export type OverviewAction =
  | { type: 'snapshot'; frame: OverviewSnapshotFrame; at_ms: number }
  | { type: 'events'; events: LiveEvent[]; at_ms: number }
  /** Runs fetched over REST (older pages, a state filter): merged, never replacing newer news. */
  | { type: 'runs'; runs: RunSummary[] }
  | { type: 'queues'; queues: Queue[]; at_ms: number }
  /** The full worker list over REST: the registry's answer replaces ours. */
  | { type: 'workers'; workers: Worker[] };

export const emptyOverview: Overview = { loaded: false, runs: {}, workers: {}, queues: [], history: [] };

/** Chart window: samples older than this, or beyond this count, are dropped. */
export const HISTORY_WINDOW_MS = 15 * 60_000;
export const HISTORY_MAX_SAMPLES = 900;
/** Samples closer together than this replace each other, so bursts do not flood the chart. */
export const HISTORY_RESOLUTION_MS = 1_000;
/** The runs list keeps at most this many runs (the newest); older ones stay a REST page away. */
export const MAX_RUNS = 2_000;

const RUN_STATES: ReadonlySet<string> = new Set(['running', 'succeeded', 'failed', 'cancelled']);

function newer(existing: RunSummary | undefined, incoming: RunSummary): boolean {
  return !existing || incoming.last_seq >= existing.last_seq;
}

export function appendSample(history: QueueSample[], queues: Queue[], at: number): QueueSample[] {
  const sample: QueueSample = { at_ms: at, queues: Object.fromEntries(queues.map((q) => [q.name, q])) };
  const last = history[history.length - 1];
  const kept = last && at - last.at_ms < HISTORY_RESOLUTION_MS ? history.slice(0, -1) : history.slice();
  kept.push(sample);
  let start = 0;
  while (start < kept.length && (kept[start]!.at_ms < at - HISTORY_WINDOW_MS || kept.length - start > HISTORY_MAX_SAMPLES)) {
    start += 1;
  }
  return start > 0 ? kept.slice(start) : kept;
}

function pruneRuns(runs: Record<string, RunSummary>): Record<string, RunSummary> {
  const ids = Object.keys(runs);
  if (ids.length <= MAX_RUNS) return runs;
  const keep = sortRuns(Object.values(runs)).slice(0, MAX_RUNS);
  return Object.fromEntries(keep.map((r) => [r.id, r]));
}

/** Newest first, as the REST list orders them. */
export function sortRuns(runs: RunSummary[]): RunSummary[] {
  return runs.slice().sort((a, b) => b.created_at_ms - a.created_at_ms || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
}

function applyEvents(state: Overview, events: LiveEvent[], at: number): Overview {
  let runs = state.runs;
  let workers = state.workers;
  let queues = state.queues;
  let runsCopied = false;
  let workersCopied = false;
  let queuesChanged = false;
  const writableRuns = () => {
    if (!runsCopied) {
      runs = { ...runs };
      runsCopied = true;
    }
    return runs;
  };

  for (const event of events) {
    switch (event.kind) {
      case 'run_created':
      case 'run_updated':
        if (newer(runs[event.run.id], event.run)) writableRuns()[event.run.id] = event.run;
        break;
      case 'run': {
        const run = runs[event.run_id];
        if (run && event.state && RUN_STATES.has(event.state) && run.state !== event.state) {
          const next = event.state as RunState;
          writableRuns()[run.id] = {
            ...run,
            state: next,
            finished_at_ms: next === 'running' ? null : (run.finished_at_ms ?? event.at_ms),
          };
        }
        break;
      }
      case 'worker':
        if (!workersCopied) {
          workers = { ...workers };
          workersCopied = true;
        }
        workers[event.worker.id] = event.worker;
        break;
      case 'queues':
        queues = event.queues;
        queuesChanged = true;
        break;
      default:
        // Task transitions, logs and progress of individual runs are the run page's business.
        break;
    }
  }

  if (!runsCopied && !workersCopied && !queuesChanged) return state;
  return {
    ...state,
    runs: runsCopied ? pruneRuns(runs) : runs,
    workers,
    queues,
    history: queuesChanged ? appendSample(state.history, queues, at) : state.history,
  };
}

export function overviewReducer(state: Overview, action: OverviewAction): Overview {
  switch (action.type) {
    case 'snapshot': {
      const { frame } = action;
      // Keep runs learned from REST pages that the snapshot's window does not cover.
      const runs: Record<string, RunSummary> = { ...state.runs };
      for (const run of frame.runs ?? []) runs[run.id] = run;
      return {
        loaded: true,
        runs: pruneRuns(runs),
        workers: Object.fromEntries((frame.workers ?? []).map((w) => [w.id, w])),
        queues: frame.queues ?? [],
        history: appendSample(state.history, frame.queues ?? [], action.at_ms),
      };
    }
    case 'events':
      return applyEvents(state, action.events, action.at_ms);
    case 'runs': {
      let runs: Record<string, RunSummary> | null = null;
      for (const run of action.runs) {
        if (newer(state.runs[run.id], run)) {
          runs ??= { ...state.runs };
          runs[run.id] = run;
        }
      }
      return runs ? { ...state, runs: pruneRuns(runs) } : state;
    }
    case 'queues':
      return { ...state, queues: action.queues, history: appendSample(state.history, action.queues, action.at_ms) };
    case 'workers':
      return { ...state, workers: Object.fromEntries(action.workers.map((w) => [w.id, w])) };
  }
}
