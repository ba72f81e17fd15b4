// A scrolling list that renders only the rows in view, plus a few on either side, so
// 100,000 rows cost the DOM what 40 do. Rows share one fixed height (see windowing.ts).
// To start again at the top (a new filter), give it a new `key`.

import { useEffect, useLayoutEffect, useRef, useState, type ReactNode } from 'react';
import { visibleRows } from './windowing';

interface Props {
  count: number;
  /** Pixels; every row must be exactly this tall. */
  rowHeight: number;
  /** The row at this index, with its own `key`. */
  renderRow: (index: number) => ReactNode;
  /** Rows rendered beyond each edge, so a quick scroll does not flash blank. */
  overscan?: number;
  className?: string;
  testId?: string;
  /** Told the rows rendered (in view and overscan) whenever they change: `start` to `end`, end excluded. */
  onRange?: (start: number, end: number) => void;
}

export function VirtualRows({ count, rowHeight, renderRow, overscan = 8, className, testId, onRange }: Props) {
  const box = useRef<HTMLDivElement>(null);
  const [scrollTop, setScrollTop] = useState(0);
  const [height, setHeight] = useState(0);

  useLayoutEffect(() => {
    const el = box.current;
    if (!el) return;
    // Reports the first size as soon as it observes, and every size after.
    const observer = new ResizeObserver(() => setHeight(el.clientHeight));
    observer.observe(el);
    return () => observer.disconnect();
  }, []);

  const { start, end } = visibleRows(scrollTop, height, rowHeight, count, overscan);
  useEffect(() => {
    onRange?.(start, end);
  }, [onRange, start, end]);
  const rows: ReactNode[] = [];
  for (let i = start; i < end; i++) rows.push(renderRow(i));

  return (
    <div ref={box} className={className} data-testid={testId} onScroll={(e) => setScrollTop(e.currentTarget.scrollTop)}>
      <div className="virtual-rows" style={{ height: count * rowHeight }}>
        <div style={{ transform: `translateY(${start * rowHeight}px)` }}>{rows}</div>
      </div>
    </div>
  );
}
