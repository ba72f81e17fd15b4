// Pure helpers for a person's decision on a task: what the panel offers, and what it sends.

import type { DecisionBody, TaskState } from '../api/types';
import { TERMINAL_TASK_STATES } from '../api/types';

/** The prompt an approval task asks, if its input has one. */
export function approvalPrompt(handler: string, input: unknown): string | null {
  if (handler !== 'approval' || typeof input !== 'object' || input === null) return null;
  const prompt = (input as Record<string, unknown>).prompt;
  return typeof prompt === 'string' ? prompt : null;
}

/** The body of a decision: an empty comment is left out rather than stored. */
export function decisionBody(comment: string): DecisionBody {
  const trimmed = comment.trim();
  return trimmed ? { comment: trimmed } : {};
}

/** Which actions a task offers in the panel, while its run is running. */
export function taskActions(state: TaskState, runRunning: boolean): { decide: boolean; cancel: boolean } {
  if (!runRunning) return { decide: false, cancel: false };
  return { decide: state === 'waiting', cancel: !TERMINAL_TASK_STATES.has(state) };
}
