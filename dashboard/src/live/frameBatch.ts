// Hands what arrives between two animation frames over in one piece. The server may send
// a run's events up to 100 times a second, and each dispatch is a render: more than one
// per frame is work nobody sees, and on a 100,000-task run it is what would make the page
// stutter. A hidden tab gets no animation frames, so a timer flushes as well.

export interface FrameBatch<T> {
  push(items: readonly T[]): void;
  /** Delivers what is held now (before something that must come after it). */
  flush(): void;
  /** Drops what is held and stops. */
  close(): void;
}

export interface FrameBatchOptions {
  requestFrame?: (fn: () => void) => unknown;
  cancelFrame?: (handle: unknown) => void;
  setTimer?: (fn: () => void, ms: number) => unknown;
  clearTimer?: (handle: unknown) => void;
  /** Longest an item waits when frames do not come (a background tab). */
  maxDelayMs?: number;
}

export function createFrameBatch<T>(deliver: (items: T[]) => void, options: FrameBatchOptions = {}): FrameBatch<T> {
  const requestFrame = options.requestFrame ?? ((fn: () => void) => requestAnimationFrame(fn));
  const cancelFrame = options.cancelFrame ?? ((handle: unknown) => cancelAnimationFrame(handle as number));
  const setTimer = options.setTimer ?? ((fn: () => void, ms: number) => setTimeout(fn, ms));
  const clearTimer = options.clearTimer ?? ((handle: unknown) => clearTimeout(handle as number));
  const maxDelayMs = options.maxDelayMs ?? 250;

  let held: (readonly T[])[] = [];
  let frame: unknown = null;
  let timer: unknown = null;
  let closed = false;

  const cancel = () => {
    if (frame !== null) cancelFrame(frame);
    if (timer !== null) clearTimer(timer);
    frame = timer = null;
  };

  const flush = () => {
    cancel();
    if (held.length === 0) return;
    const items = held.length === 1 ? held[0]!.slice() : held.flat();
    held = [];
    deliver(items);
  };

  return {
    push(items) {
      if (closed || items.length === 0) return;
      held.push(items);
      if (frame === null) frame = requestFrame(flush);
      if (timer === null) timer = setTimer(flush, maxDelayMs);
    },
    flush,
    close() {
      closed = true;
      cancel();
      held = [];
    },
  };
}
