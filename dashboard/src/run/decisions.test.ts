import { describe, expect, it } from 'vitest';
import type { Task } from '../api/types';
import { approvalPrompt, budgetWait, decisionBody, raiseBody, taskActions } from './decisions';

describe('task decisions', () => {
  it('reads the prompt of approval tasks only', () => {
    expect(approvalPrompt('approval', { prompt: 'Publish?' })).toBe('Publish?');
    expect(approvalPrompt('echo', { prompt: 'Publish?' })).toBeNull();
    expect(approvalPrompt('approval', { prompt: 3 })).toBeNull();
    expect(approvalPrompt('approval', null)).toBeNull();
  });

  it('leaves an empty comment out', () => {
    expect(decisionBody('  ')).toEqual({});
    expect(decisionBody(' ship it ')).toEqual({ comment: 'ship it' });
  });

  it('offers a decision on waiting tasks and cancel on unfinished ones of a running run', () => {
    expect(taskActions('waiting', true)).toEqual({ decide: true, cancel: true });
    expect(taskActions('running', true)).toEqual({ decide: false, cancel: true });
    expect(taskActions('succeeded', true)).toEqual({ decide: false, cancel: false });
    expect(taskActions('waiting', false)).toEqual({ decide: false, cancel: false });
  });

  it('tells a task waiting for a budget raise from an approval, with the budget it waits on', () => {
    const waiting = {
      state: 'waiting',
      handler: 'agent',
      waiting_for: 'budget',
      error: {
        kind: 'awaiting_budget',
        error_type: 'run',
        message: "waiting for a budget raise: the run's max_cost_usd 1: $0.14 spent, about $2.18 more needed",
      },
    } as unknown as Task;
    expect(budgetWait(waiting)).toEqual({
      scope: 'run',
      message: "the run's max_cost_usd 1: $0.14 spent, about $2.18 more needed",
    });
    expect(budgetWait({ ...waiting, error: { ...waiting.error!, error_type: 'task' } })?.scope).toBe('task');
    expect(budgetWait({ ...waiting, waiting_for: 'approval' })).toBeNull();
    expect(budgetWait({ ...waiting, state: 'ready' })).toBeNull();
  });

  it('builds a raise from the fields given and names a bad one', () => {
    expect(raiseBody('', '5', '')).toEqual({ raise: { max_cost_usd: 5 } });
    expect(raiseBody(' ok ', '', '20000')).toEqual({ comment: 'ok', raise: { max_tokens: 20000 } });
    expect(raiseBody('', '2.5', '100')).toEqual({ raise: { max_cost_usd: 2.5, max_tokens: 100 } });
    expect(raiseBody('', '', '')).toBe('Give a new cost or token limit.');
    expect(raiseBody('', 'lots', '')).toBe('The cost must be a number of US dollars.');
    expect(raiseBody('', '', '1.5')).toBe('Tokens must be a whole number.');
  });
});
