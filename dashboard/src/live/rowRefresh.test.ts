import { describe, expect, it } from 'vitest';
import { newlyVisible, pagesCovering } from './rowRefresh';

const order = Array.from({ length: 1_000 }, (_, i) => `t${i}`);
const indexOf = (id: string) => {
  const i = order.indexOf(id);
  return i < 0 ? undefined : i;
};

describe('newlyVisible', () => {
  it('is the rows on screen now that were not before, in screen order', () => {
    expect(newlyVisible(['t1', 't2', 't3'], ['t3', 't4', 't5'])).toEqual(['t4', 't5']);
    expect(newlyVisible([], ['t1'])).toEqual(['t1']);
    expect(newlyVisible(['t1'], [])).toEqual([]);
  });
});

describe('pagesCovering', () => {
  it('reads a block of rows in one page after the row before it', () => {
    expect(pagesCovering(order, indexOf, ['t12', 't10', 't11'])).toEqual([{ after: 't9', limit: 3 }]);
  });

  it('starts from the first task when the block does', () => {
    expect(pagesCovering(order, indexOf, ['t0', 't1'])).toEqual([{ after: null, limit: 2 }]);
  });

  it('merges rows with small gaps and splits far ones', () => {
    expect(pagesCovering(order, indexOf, ['t10', 't14', 't500'], 4)).toEqual([
      { after: 't9', limit: 5 },
      { after: 't499', limit: 1 },
    ]);
    expect(pagesCovering(order, indexOf, ['t10', 't16'], 4)).toHaveLength(2);
  });

  it('never makes a page larger than the server gives', () => {
    const ids = order.slice(0, 25);
    const pages = pagesCovering(order, indexOf, ids, 64, 10);
    expect(pages).toEqual([
      { after: null, limit: 10 },
      { after: 't9', limit: 10 },
      { after: 't19', limit: 5 },
    ]);
  });

  it('leaves out ids the run does not have, and repeats', () => {
    expect(pagesCovering(order, indexOf, ['nope', 't3', 't3'])).toEqual([{ after: 't2', limit: 1 }]);
    expect(pagesCovering(order, indexOf, [])).toEqual([]);
  });
});
