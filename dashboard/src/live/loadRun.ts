// Loads a run with all its tasks. The summary comes first: cheap at any size, it lets the
// page draw its header at once, and its `last_seq` is where the live stream resumes.
// Then the tasks, a page at a time (`GET /runs/{id}/tasks`, by id): no single answer of
// 100,000 tasks for the server to build and the browser to parse in one go, and progress
// to show meanwhile. A server without that endpoint (404 or 405 on the first page, or an
// answer that is not JSON) sends the whole run document instead.
//
// Pages are read after the summary, so they may be newer than its `last_seq`; the stream
// replays every event after it, which leaves each task in its latest state either way.

import { api, ApiError, NOT_JSON } from '../api/client';
import type { Run, RunHead, RunWithoutTasks, Task, TaskPage, TaskPageQuery } from '../api/types';

/** The server's largest page: fewest round trips. */
export const TASK_PAGE_SIZE = 5_000;
/** The first page is small: a screenful of rows shows while the rest comes (100,000 tasks take seconds). */
export const FIRST_PAGE_SIZE = 200;

/** The calls loadRun makes, so tests can answer them. */
export interface RunSource {
  getRunSummary(id: string, signal?: AbortSignal): Promise<RunWithoutTasks>;
  listTasks(id: string, query: TaskPageQuery, signal?: AbortSignal): Promise<TaskPage>;
  getRun(id: string, signal?: AbortSignal): Promise<Run>;
}

export interface LoadOptions {
  signal?: AbortSignal;
  /** Called with the summary, then after each page with the tasks so far (a new array each time). */
  onProgress?: (summary: RunHead, loaded: readonly Task[]) => void;
  source?: RunSource;
}

/** What a server without the endpoint answers: 404 or 405, or its index.html for an unrouted path. */
function endpointMissing(error: unknown): boolean {
  return error instanceof ApiError && (error.status === 404 || error.status === 405 || error.code === NOT_JSON);
}

export async function loadRun(runId: string, options: LoadOptions = {}): Promise<Run> {
  const { signal, onProgress, source = api } = options;
  const summary = await source.getRunSummary(runId, signal);
  onProgress?.(summary, []);
  const tasks: Task[] = [];
  let after: string | null = null;
  for (;;) {
    let page: TaskPage;
    try {
      page = await source.listTasks(runId, { after, limit: after === null ? FIRST_PAGE_SIZE : TASK_PAGE_SIZE }, signal);
    } catch (error) {
      if (after === null && endpointMissing(error)) return source.getRun(runId, signal);
      throw error;
    }
    for (const task of page.tasks) tasks.push(task);
    onProgress?.(summary, tasks.slice());
    // A cursor that does not move would ask for the same page forever.
    if (!page.next_after || page.next_after === after || page.tasks.length === 0) break;
    after = page.next_after;
  }
  return { ...summary, tasks };
}
