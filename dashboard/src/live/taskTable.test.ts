import { describe, expect, it } from 'vitest';
import { task } from '../testing/fixtures';
import { TaskTable } from './taskTable';

describe('TaskTable', () => {
  it('keeps the tasks in order, each id once', () => {
    const table = TaskTable.of([task('b'), task('a'), task('b', { handler: 'dup' })]);
    expect(table.ids).toEqual(['b', 'a']);
    expect(table.size).toBe(2);
    expect(table.get('b')!.handler).toBe('echo');
    expect(table.get('zzz')).toBeUndefined();
    expect(table.has('a')).toBe(true);
    expect(table.values().map((t) => t.id)).toEqual(['b', 'a']);
  });

  it('edits copy on write: the old table never changes', () => {
    const before = TaskTable.of([task('a'), task('b')]);
    const draft = before.edit();
    draft.set(task('a', { state: 'running' }));
    draft.touch('a');
    expect(draft.get('a')!.state).toBe('running');
    const after = draft.done();
    expect(after.get('a')!.state).toBe('running');
    expect(after.touched('a')).toBe(1);
    expect(after.get('b')).toBe(before.get('b'));
    expect(before.get('a')!.state).toBe('pending');
    expect(before.touched('a')).toBe(0);
    expect(after.ids).toBe(before.ids);
  });

  it('answers itself when a draft changed nothing, and ignores tasks it does not hold', () => {
    const table = TaskTable.of([task('a')]);
    const draft = table.edit();
    draft.set(task('new'));
    draft.touch('new');
    expect(draft.done()).toBe(table);
    expect(table.get('new')).toBeUndefined();
  });

  it('carries touch counters into a table of a new task set', () => {
    const draft = TaskTable.of([task('a'), task('b')]).edit();
    draft.touch('b');
    draft.touch('b');
    const grown = TaskTable.of([task('c'), task('b'), task('a')], draft.done());
    expect(grown.touched('b')).toBe(2);
    expect(grown.touched('c')).toBe(0);
  });
});
