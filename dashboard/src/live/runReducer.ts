// Live state of one run: a pure reducer from server frames to the view the run page draws.
// A snapshot replaces everything; an `events` frame (one coalesced burst) is applied in a
// single step, copying each touched collection once per batch rather than once per event,
// so a 5,000-task run under load stays cheap.
//
// Runs grow while they run: a task that spawns children (dynamic fan-out) adds tasks the
// snapshot never had. Their events arrive before their specs, so the reducer keeps them
// aside (`orphans`), asks for a refetch of the run (`refetchWanted`), and merges the
// answer (`refetched`), replaying the kept events the answer is too old to include.

import {
  TASK_STATES,
  TERMINAL_TASK_STATES,
  type LiveEvent,
  type Run,
  type RunState,
  type RunHead,
  type RunSummary,
  type StateCounts,
  type StoredEvent,
  type Task,
  type TaskState,
} from '../api/types';
import { hasUsage, laterUsage } from '../usage';
import { TaskTable } from './taskTable';

/** What the graph is drawn from: changes only when the run's task set does. */
export interface TaskSpec {
  id: string;
  handler: string;
  depends_on: string[];
  /** The task that spawned this one; its children are drawn as one group under it. */
  parent?: string | null;
  agent?: string | null;
}

/** The text a task's current attempt has streamed so far. */
export interface LiveAnswer {
  attempt: number;
  text: string;
  /** Earlier text is left out: the server's buffer or ours only kept the latest. */
  truncated?: boolean;
}

export interface RunView {
  summary: RunHead | null;
  /**
   * The tasks in the order the server listed them, each with its touch counter (bumped by
   * each of its stored events: a detail view refetches on change).
   */
  tasks: TaskTable;
  /** Kept by reference across snapshots of the same DAG, so layout is not redone. */
  specs: TaskSpec[];
  /** Highest stored-event seq applied; events at or below it are duplicates of a resume. */
  lastSeq: number;
  /** Streamed answers of running tasks, dropped when the task finishes (its output takes over). */
  answers: Record<string, LiveAnswer>;
  /** Task events for tasks not known yet (spawned children), in order, until a refetch brings their specs. */
  orphans: StoredEvent[];
  /** Unknown task id → seq of the first event that named it. */
  unknown: Record<string, number>;
  /**
   * Bumped when the run should be fetched again: a task appeared that we have no spec for,
   * or an agent task finished (its usage, and the run's, only come over REST).
   */
  refetchWanted: number;
}

export type RunAction =
  | { type: 'snapshot'; run: Run; seq: number }
  /**
   * A burst of events. `partial`: the stream carries only some tasks' events (a big run's
   * visible rows), so counts are not moved by them but taken from `run`, the run's latest
   * summary the stream sent with them.
   */
  | { type: 'events'; events: LiveEvent[]; run?: RunSummary; partial?: boolean }
  /**
   * A big run's stream started afresh (`tasks=` or `detail=summary`): the run's summary
   * and the followed tasks as of `seq`; the other tasks keep what we have.
   */
  | { type: 'partialSnapshot'; run: RunSummary; tasks: Task[]; seq: number }
  /**
   * Tasks read over REST (rows scrolled into view, a state filter's members). Each replaces
   * ours only if no event touched it since the read was asked for: `asOf` is the task
   * table then (its touch counters). An event after that is at least as new as the
   * answer's lower bound, and the stream follows that task from there.
   */
  | { type: 'rows'; tasks: Task[]; asOf: Pick<TaskTable, 'touched'> }
  /** A RunSummary from a cancel/retry answer: may move the run's state ahead of its events. */
  | { type: 'summary'; run: RunSummary }
  /** The run fetched again on `refetchWanted`: merged, never moving a known task backwards. */
  | { type: 'refetched'; run: Run };

export const emptyRunView: RunView = {
  summary: null,
  tasks: TaskTable.EMPTY,
  specs: [],
  lastSeq: -1,
  answers: {},
  orphans: [],
  unknown: {},
  refetchWanted: 0,
};

/** A task's live answer keeps at most this much of its latest text, so a chatty model cannot eat the tab. */
export const MAX_ANSWER_CHARS = 200_000;
/** Events kept for unknown tasks; past this the oldest go (a refetch answer then stands as it is). */
export const MAX_ORPHANS = 50_000;

const TASK_STATE_SET: ReadonlySet<string> = new Set(TASK_STATES);
const RUN_STATE_SET: ReadonlySet<string> = new Set(['running', 'succeeded', 'failed', 'cancelled']);

export function zeroCounts(): StateCounts {
  return { pending: 0, ready: 0, queued: 0, running: 0, waiting: 0, succeeded: 0, failed: 0, cancelled: 0, skipped: 0 };
}

export function countStates(tasks: Iterable<Task>): StateCounts {
  const counts = zeroCounts();
  for (const task of tasks) counts[task.state] += 1;
  return counts;
}

function specOf(task: Task): TaskSpec {
  return { id: task.id, handler: task.handler, depends_on: task.depends_on ?? [], parent: task.parent ?? null, agent: task.agent ?? null };
}

function sameSpecs(a: TaskSpec[], b: Task[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    const deps = y.depends_on ?? [];
    if (x.id !== y.id || x.handler !== y.handler || x.depends_on.length !== deps.length) return false;
    if ((x.parent ?? null) !== (y.parent ?? null) || (x.agent ?? null) !== (y.agent ?? null)) return false;
    for (let j = 0; j < deps.length; j++) if (x.depends_on[j] !== deps[j]) return false;
  }
  return true;
}

function sameList(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * Optional fields may be left out on the wire; the views rely on these being there. A task
 * that has them is kept as it is: copying every task of a 100,000-task snapshot was most of
 * the longest frame of the page's load (a Chromium profile, benches/NOTES.md).
 */
function normalized(task: Task): Task {
  if (task.depends_on !== undefined && task.progress !== undefined) return task;
  return { ...task, depends_on: task.depends_on ?? [], progress: task.progress ?? null };
}

/**
 * The unknown ids still to come after an answer taken at `seq`, and their kept events.
 * Ids the answer brought are known now; ids an event at or before `seq` named should have
 * been in it, so asking again could loop: they are given up (their next event asks anew).
 */
function settleUnknown(state: RunView, known: (id: string) => boolean, seq: number) {
  const unknown: Record<string, number> = {};
  let pending = false;
  for (const [id, firstSeq] of Object.entries(state.unknown)) {
    if (known(id) || firstSeq <= seq) continue;
    unknown[id] = firstSeq;
    pending = true;
  }
  const orphans = state.orphans.filter((e) => e.task_id !== null && e.task_id in unknown);
  return { unknown, orphans, pending };
}

function applySnapshot(state: RunView, run: Run, seq: number): RunView {
  const sameRun = state.summary?.id === run.id;
  // A snapshot older than what we have (a slow REST answer racing the socket) would undo events.
  if (sameRun && seq < state.lastSeq) return state;
  const { tasks: taskList, ...summary } = run;
  const keepSpecs = sameRun && sameSpecs(state.specs, taskList);
  const specs = keepSpecs ? state.specs : taskList.map(specOf);
  const base = sameRun ? state : emptyRunView;
  const tasks = TaskTable.of(taskList.map(normalized), base.tasks);
  const { unknown, orphans, pending } = settleUnknown(base, (id) => tasks.has(id), seq);
  return {
    summary: { ...summary, counts: countStates(taskList), last_seq: seq },
    tasks,
    specs,
    lastSeq: seq,
    answers: dropFinishedAnswers(base.answers, tasks),
    orphans,
    unknown,
    refetchWanted: base.refetchWanted + (pending ? 1 : 0),
  };
}

function dropFinishedAnswers(answers: Record<string, LiveAnswer>, tasks: TaskTable): Record<string, LiveAnswer> {
  let kept = answers;
  for (const id of Object.keys(answers)) {
    const task = tasks.get(id);
    if (task && TERMINAL_TASK_STATES.has(task.state)) {
      if (kept === answers) kept = { ...answers };
      delete kept[id];
    }
  }
  return kept;
}

/**
 * Merges a run fetched on `refetchWanted` into a view that may already be ahead of it.
 * New tasks come in with the fetched state plus the kept events the answer is too old to
 * include; known tasks keep their live state and take the fetched spec (a spawn adds
 * dependencies to the parent's dependents) and usage.
 */
function applyRefetched(state: RunView, run: Run): RunView {
  if (state.summary?.id !== run.id) return state;
  const seq = run.last_seq;
  if (seq >= state.lastSeq) return applySnapshot(state, run, seq);

  const fetchedIds = new Set<string>();
  /** Tasks new to us, and known tasks whose spec or usage the answer changes. */
  const added = new Map<string, Task>();
  const updated = new Map<string, Task>();
  for (const fetched of run.tasks) {
    fetchedIds.add(fetched.id);
    const ours = state.tasks.get(fetched.id);
    if (!ours) {
      added.set(fetched.id, normalized(fetched));
    } else {
      const update = {
        depends_on: fetched.depends_on ?? ours.depends_on,
        parent: fetched.parent ?? ours.parent ?? null,
        agent: fetched.agent ?? ours.agent ?? null,
        usage: laterUsage(ours.usage, fetched.usage),
      };
      // Untouched tasks stay the same objects, so their nodes do not redraw.
      const same =
        update.parent === (ours.parent ?? null) &&
        update.agent === (ours.agent ?? null) &&
        update.usage === ours.usage &&
        sameList(update.depends_on, ours.depends_on);
      if (!same) updated.set(fetched.id, { ...ours, ...update });
    }
  }
  for (const event of state.orphans) {
    const id = event.task_id!;
    const task = added.get(id);
    if (!task || event.seq <= seq || !event.state || !TASK_STATE_SET.has(event.state)) continue;
    added.set(id, transitionTask(task, event));
  }

  const order = run.tasks.map((t) => t.id);
  for (const id of state.tasks.ids) if (!fetchedIds.has(id)) order.push(id);
  const ordered = order.map((id) => added.get(id) ?? updated.get(id) ?? state.tasks.get(id)!);
  const specs = sameSpecs(state.specs, ordered) ? state.specs : ordered.map(specOf);
  let tasks: TaskTable;
  if (specs === state.specs) {
    // Same tasks in the same order: only the updated ones change.
    const draft = state.tasks.edit();
    for (const task of updated.values()) draft.set(task);
    tasks = draft.done();
  } else {
    tasks = TaskTable.of(ordered, state.tasks);
  }
  const { unknown, orphans, pending } = settleUnknown(state, (id) => tasks.has(id), seq);
  const summary = state.summary;
  return {
    ...state,
    summary: {
      ...summary,
      counts: countStates(ordered),
      task_count: Math.max(run.task_count, order.length),
      usage: laterUsage(summary.usage, run.usage),
    },
    tasks,
    specs,
    answers: dropFinishedAnswers(state.answers, tasks),
    orphans,
    unknown,
    refetchWanted: state.refetchWanted + (pending ? 1 : 0),
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
    case 'waiting':
      // Held for a decision: not finished, whatever it did before.
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

/** Whether a task's finish can change usage: only agent tasks (or ones that reported usage) call models. */
function bearsUsage(task: Task): boolean {
  return !!task.agent || hasUsage(task.usage);
}

/** An answer trimmed to its latest MAX_ANSWER_CHARS. */
function keptAnswer(attempt: number, text: string, truncated: boolean): LiveAnswer {
  if (text.length <= MAX_ANSWER_CHARS) return truncated ? { attempt, text, truncated } : { attempt, text };
  return { attempt, text: text.slice(text.length - MAX_ANSWER_CHARS), truncated: true };
}

/** The run's latest summary from a partial stream: its counts are exact, ours are not. */
function takeSummary(ours: RunHead, theirs: RunHead): RunHead {
  if (theirs.id !== ours.id) return ours;
  return { ...ours, ...theirs, history: theirs.history ?? ours.history, last_seq: Math.max(ours.last_seq, theirs.last_seq ?? 0) };
}

function applyEvents(state: RunView, events: LiveEvent[], frameRun?: RunSummary, partial = false): RunView {
  const summary0 = state.summary;
  if (!summary0) return state;
  let summary = summary0;
  const tasks = state.tasks.edit();
  let answers = state.answers;
  let unknown = state.unknown;
  let orphans = state.orphans;
  let counts = summary0.counts;
  let lastSeq = state.lastSeq;
  let refetchWanted = state.refetchWanted;
  let changed = partial && frameRun !== undefined;
  let answersCopied = false;
  let countsCopied = false;

  const writableAnswers = () => {
    if (!answersCopied) {
      answers = { ...answers };
      answersCopied = true;
    }
    return answers;
  };
  const moveCount = (from: TaskState, to: TaskState) => {
    if (from === to || partial) return;
    if (!countsCopied) {
      counts = { ...counts };
      countsCopied = true;
    }
    counts[from] -= 1;
    counts[to] += 1;
  };
  const keepOrphan = (event: StoredEvent) => {
    if (orphans === state.orphans) orphans = orphans.slice();
    orphans.push(event);
    if (orphans.length > MAX_ORPHANS) orphans.splice(0, orphans.length - MAX_ORPHANS);
    if (!(event.task_id! in unknown)) {
      unknown = { ...unknown, [event.task_id!]: event.seq };
      refetchWanted += 1;
    }
  };

  for (const event of events) {
    if (event.kind === 'answer') {
      // The text so far, on (re)joining: it replaces ours, and the deltas that follow continue it.
      if (event.run_id !== summary0.id) continue;
      const task = tasks.get(event.task_id);
      if (task && (event.attempt < task.attempt || TERMINAL_TASK_STATES.has(task.state))) continue;
      const answer = answers[event.task_id];
      if (answer && event.attempt < answer.attempt) continue;
      writableAnswers()[event.task_id] = keptAnswer(event.attempt, event.text, event.dropped_bytes > 0);
      changed = true;
      continue;
    }
    if (event.kind === 'progress') {
      if (event.run_id !== summary0.id) continue;
      const task = tasks.get(event.task_id);
      if (task && event.attempt < task.attempt) continue;
      const delta = event.text_delta;
      if (delta) {
        // Kept even for a task not known yet: a spawned child may stream before its spec arrives.
        const answer = answers[event.task_id];
        if (!answer || event.attempt >= answer.attempt) {
          const same = answer && answer.attempt === event.attempt;
          const text = same ? answer.text + delta : delta;
          writableAnswers()[event.task_id] = keptAnswer(event.attempt, text, !!(same && answer.truncated));
          changed = true;
        }
      }
      if (!task) continue;
      // A delta alone says nothing about progress: keep what the task last reported. The
      // server sends a text-only delta with an empty message, which is no message.
      const progress = delta ? (event.progress ?? task.progress) : event.progress;
      const message = delta ? event.message || task.progress_message : event.message;
      if (progress === task.progress && message === task.progress_message) continue;
      tasks.set({ ...task, progress, progress_message: message });
      changed = true;
      continue;
    }
    if (event.kind !== 'task' && event.kind !== 'run' && event.kind !== 'log') continue;
    if (event.run_id !== summary0.id || event.seq <= lastSeq) continue;
    lastSeq = event.seq;
    changed = true;
    if (event.kind === 'run') {
      if (event.state && RUN_STATE_SET.has(event.state)) summary = runMoved(summary, event.state as RunState, event.at_ms);
      // Who cancelled or retried it shows as it happens, not only after a reload.
      if (event.by) summary = { ...summary, history: [...(summary.history ?? []), event] };
      continue;
    }
    if (!event.task_id) continue;
    // A task not known yet has no counter; its detail is fetched afresh once it is known.
    tasks.touch(event.task_id);
    if (event.kind === 'log') continue;
    if (!event.state || !TASK_STATE_SET.has(event.state)) continue;
    const task = tasks.get(event.task_id);
    if (!task) {
      // A task we have no spec for: a child spawned while we watch (it starts `pending`).
      keepOrphan(event);
      continue;
    }
    const moved = transitionTask(task, event);
    moveCount(task.state, moved.state);
    tasks.set(moved);
    const answer = answers[event.task_id];
    if (answer && (TERMINAL_TASK_STATES.has(moved.state) || moved.state === 'pending' || moved.attempt > answer.attempt)) {
      delete writableAnswers()[event.task_id];
    }
    // A partial stream's summaries bring the run's usage; refetching 100,000 tasks for it would not do.
    if (!partial && TERMINAL_TASK_STATES.has(moved.state) && !TERMINAL_TASK_STATES.has(task.state) && bearsUsage(task)) refetchWanted += 1;
  }

  if (!changed) return state;
  if (partial && frameRun) {
    summary = takeSummary(summary, frameRun);
    counts = summary.counts;
    if (grewUnseen(summary0, summary, state.tasks)) refetchWanted += 1;
  }
  return {
    ...state,
    summary: { ...summary, counts, last_seq: Math.max(summary.last_seq, lastSeq) },
    tasks: tasks.done(),
    answers,
    orphans,
    unknown,
    lastSeq,
    refetchWanted,
  };
}

/**
 * A partial stream sends no events of tasks off screen, so a task spawned during a big run
 * only shows as a larger `task_count` in its summary: when that grows past the tasks we
 * hold, the run is read again (`refetched` merges the new tasks in).
 */
function grewUnseen(before: RunHead, after: RunHead, tasks: TaskTable): boolean {
  return after.task_count > before.task_count && after.task_count > tasks.size;
}

function applyPartialSnapshot(state: RunView, run: RunSummary, fresh: Task[], seq: number): RunView {
  const current = state.summary;
  if (!current || current.id !== run.id) return state;
  const tasks = state.tasks.edit();
  for (const task of fresh) if (tasks.get(task.id)) tasks.set(normalized(task));
  const table = tasks.done();
  const summary = takeSummary(current, run);
  return {
    ...state,
    refetchWanted: state.refetchWanted + (grewUnseen(current, summary, state.tasks) ? 1 : 0),
    summary: { ...summary, last_seq: seq },
    tasks: table,
    lastSeq: seq,
    answers: dropFinishedAnswers(state.answers, table),
  };
}

function applyRows(state: RunView, fresh: Task[], asOf: Pick<TaskTable, 'touched'>): RunView {
  if (!state.summary) return state;
  const tasks = state.tasks.edit();
  for (const task of fresh) {
    const ours = tasks.get(task.id);
    if (!ours || asOf.touched(task.id) !== state.tasks.touched(task.id)) continue;
    if (sameRow(ours, task)) continue;
    tasks.set(normalized(task));
  }
  const table = tasks.done();
  return table === state.tasks ? state : { ...state, tasks: table, answers: dropFinishedAnswers(state.answers, table) };
}

/** What a row shows is the same: the object is kept, so the row does not redraw. */
function sameRow(a: Task, b: Task): boolean {
  return (
    a.state === b.state &&
    a.attempt === b.attempt &&
    a.worker_id === (b.worker_id ?? null) &&
    a.started_at_ms === (b.started_at_ms ?? null) &&
    a.finished_at_ms === (b.finished_at_ms ?? null) &&
    (a.error?.message ?? null) === (b.error?.message ?? null)
  );
}

function runMoved<S extends RunSummary>(summary: S, next: RunState, at: number): S {
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
      return applyEvents(state, action.events, action.run, action.partial);
    case 'partialSnapshot':
      return applyPartialSnapshot(state, action.run, action.tasks, action.seq);
    case 'rows':
      return applyRows(state, action.tasks, action.asOf);
    case 'summary':
      return applySummary(state, action.run);
    case 'refetched':
      return applyRefetched(state, action.run);
  }
}

/** Tasks finished one way or another: the numerator of a run's progress. */
export function doneCount(counts: StateCounts): number {
  let done = 0;
  for (const state of TERMINAL_TASK_STATES) done += counts[state];
  return done;
}
