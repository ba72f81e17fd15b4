// Which REST pages bring rows that just scrolled into view up to date. A big run's stream
// follows only the rows on screen (subscription.ts), so a row that was off screen holds
// the state it had when it was last seen. `GET /runs/{id}/tasks?after=ID&limit=N` reads
// tasks in the run's order, so rows that sit together in that order come in one page:
// positions close to each other are merged into one read, gaps and all, rather than one
// read per row.

/** One read: `limit` tasks after `after` (from the first task when null). */
export interface RowPage {
  after: string | null;
  limit: number;
}

/** Largest page the server gives. */
export const MAX_ROW_PAGE = 5_000;
/** Rows in between two wanted ones that are still worth reading to save a request. */
export const MERGE_GAP = 64;

/** Ids in `now` that were not in `before`: the rows whose state may be old. */
export function newlyVisible(before: readonly string[], now: readonly string[]): string[] {
  const seen = new Set(before);
  return now.filter((id) => !seen.has(id));
}

/**
 * The pages covering `ids`, given each one's position in the run's `order`; ids the order
 * does not have are left out. Pages are in order and never overlap.
 */
export function pagesCovering(
  order: readonly string[],
  indexOf: (id: string) => number | undefined,
  ids: readonly string[],
  maxGap = MERGE_GAP,
  maxPage = MAX_ROW_PAGE,
): RowPage[] {
  const positions = [...new Set(ids.map(indexOf).filter((i): i is number => i !== undefined))].sort((a, b) => a - b);
  const pages: RowPage[] = [];
  let first = -1;
  let last = -1;
  const close = () => {
    if (first < 0) return;
    pages.push({ after: first === 0 ? null : order[first - 1]!, limit: last - first + 1 });
  };
  for (const p of positions) {
    if (first >= 0 && p - last - 1 <= maxGap && p - first + 1 <= maxPage) {
      last = p;
      continue;
    }
    close();
    first = last = p;
  }
  close();
  return pages;
}
