import { describe, expect, it } from 'vitest';
import type { TaskState } from '../api/types';
import { task } from '../testing/fixtures';
import { filterRows, idMatches } from './taskFilter';

const rows = [
  task('fetch-1', { state: 'succeeded' }),
  task('fetch-2', { state: 'failed' }),
  task('Summarise', { state: 'running' }),
  task('fetch-3', { state: 'running' }),
];
const ids = rows.map((t) => t.id);
const states = (...list: TaskState[]) => new Set(list);

describe('idMatches', () => {
  it('finds ids containing the text, in any case', () => {
    expect(idMatches(ids, 'FETCH')).toEqual([0, 1, 3]);
    expect(idMatches(ids, ' summ ')).toEqual([2]);
    expect(idMatches(ids, 'nothing')).toEqual([]);
  });

  it('answers null (every task) for no text', () => {
    expect(idMatches(ids, '  ')).toBeNull();
  });
});

describe('filterRows', () => {
  it('is the row array itself when nothing filters', () => {
    expect(filterRows(rows, null, states())).toBe(rows);
  });

  it('keeps tasks in any of the picked states, in table order', () => {
    expect(filterRows(rows, null, states('running', 'failed')).map((t) => t.id)).toEqual(['fetch-2', 'Summarise', 'fetch-3']);
  });

  it('combines the id match with the states', () => {
    const fetches = idMatches(ids, 'fetch');
    expect(filterRows(rows, fetches, states()).map((t) => t.id)).toEqual(['fetch-1', 'fetch-2', 'fetch-3']);
    expect(filterRows(rows, fetches, states('running')).map((t) => t.id)).toEqual(['fetch-3']);
  });
});

describe("filterRows with the server's members", () => {
  it('shows rows in the chosen states that the server also has in them', () => {
    const members = new Set(['fetch-3', 'fetch-1']);
    // fetch-1 is succeeded here: an old state the server no longer has; Summarise moved in unseen.
    expect(filterRows(rows, null, states('running'), members).map((t) => t.id)).toEqual(['fetch-3']);
    expect(filterRows(rows, [2, 3], states('running'), new Set()).map((t) => t.id)).toEqual([]);
  });

  it('does not apply without a state filter', () => {
    expect(filterRows(rows, null, states(), new Set())).toBe(rows);
  });
});

