import { describe, expect, it } from 'vitest';
import { approvalPrompt, decisionBody, taskActions } from './decisions';

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
});
