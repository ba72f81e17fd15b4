// Pure helpers for a person's decision on a task: what the panel offers, and what it sends.

import type { BudgetRaise, DecisionBody, Task, TaskState } from '../api/types';
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

/** Why a waiting task waits for a budget raise: which budget, and the server's account
 *  of it (limit, spent so far, about how much more is needed); null otherwise. */
export function budgetWait(task: Task): { scope: 'run' | 'task'; message: string } | null {
  if (task.state !== 'waiting' || task.waiting_for !== 'budget') return null;
  const scope = task.error?.error_type === 'task' ? 'task' : 'run';
  const message = (task.error?.message ?? '').replace(/^waiting for a budget raise: /, '');
  return { scope, message };
}

/** The body of a raise from the panel's fields (empty ones left out), or what is wrong
 *  with them. */
export function raiseBody(comment: string, cost: string, tokens: string): DecisionBody | string {
  const raise: BudgetRaise = {};
  if (cost.trim()) {
    const usd = Number(cost);
    if (!Number.isFinite(usd) || usd < 0) return 'The cost must be a number of US dollars.';
    raise.max_cost_usd = usd;
  }
  if (tokens.trim()) {
    const n = Number(tokens);
    if (!Number.isSafeInteger(n) || n < 0) return 'Tokens must be a whole number.';
    raise.max_tokens = n;
  }
  if (raise.max_cost_usd === undefined && raise.max_tokens === undefined) {
    return 'Give a new cost or token limit.';
  }
  return { ...decisionBody(comment), raise };
}
