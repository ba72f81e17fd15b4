// Pure helper for "Re-run from here": the request the override editor sends.

import type { RerunBody } from '../api/types';

/** The body of a re-run from `taskId`, or why the edited input cannot be sent. An input
 * left as it was sends no override, so the task keeps its stored input. */
export function rerunBody(
  taskId: string,
  original: unknown,
  edited: string,
): { body: RerunBody; error: null } | { body: null; error: string } {
  let input: unknown;
  try {
    input = JSON.parse(edited);
  } catch (err) {
    return { body: null, error: `The input is not valid JSON: ${err instanceof Error ? err.message : String(err)}` };
  }
  const body: RerunBody = { from: [taskId] };
  if (JSON.stringify(input) !== JSON.stringify(original ?? null)) {
    body.overrides = { tasks: { [taskId]: { input } } };
  }
  return { body, error: null };
}
