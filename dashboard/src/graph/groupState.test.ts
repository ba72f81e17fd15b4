import { describe, expect, it } from 'vitest';
import { dominantState, memberCounts } from './groupState';
import { zeroCounts } from '../live/runReducer';
import { task } from '../testing/fixtures';

const counts = (fields: Partial<ReturnType<typeof zeroCounts>>) => ({ ...zeroCounts(), ...fields });

describe('memberCounts', () => {
  it('counts the states of the members only', () => {
    const tasks = new Map([task('a', { state: 'running' }), task('b', { state: 'succeeded' }), task('c', { state: 'running' })].map((t) => [t.id, t]));
    expect(memberCounts(['a', 'b', 'missing'], tasks)).toMatchObject({ running: 1, succeeded: 1 });
  });
});

describe('dominantState', () => {
  it('shows activity first, then unfinished work, then the worst outcome', () => {
    expect(dominantState(counts({ running: 1, failed: 3, succeeded: 10 }))).toBe('running');
    expect(dominantState(counts({ pending: 2, succeeded: 10 }))).toBe('pending');
    expect(dominantState(counts({ failed: 1, succeeded: 10 }))).toBe('failed');
    expect(dominantState(counts({ skipped: 2, succeeded: 10 }))).toBe('succeeded');
    expect(dominantState(counts({ skipped: 4 }))).toBe('skipped');
    expect(dominantState(counts({ succeeded: 4 }))).toBe('succeeded');
    expect(dominantState(zeroCounts())).toBe('pending');
  });
});
