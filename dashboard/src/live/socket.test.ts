import { describe, expect, it } from 'vitest';
import { backoffDelay, busStreamSeq, openLiveSocket, runStreamSeq, socketUrl, type SocketLike, type SocketStatus } from './socket';
import type { LiveEvent, RunSnapshotFrame } from '../api/types';
import { run, taskEvent } from '../testing/fixtures';

class FakeSocket implements SocketLike {
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: unknown) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  closed = false;
  constructor(readonly url: string) {}
  send(frame: unknown) {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }
  close() {
    this.closed = true;
  }
  drop() {
    this.onclose?.({});
  }
}

function harness(since: number | null = null) {
  const sockets: FakeSocket[] = [];
  const timers: { fn: () => void; ms: number }[] = [];
  const snapshots: RunSnapshotFrame[] = [];
  const batches: LiveEvent[][] = [];
  const statuses: SocketStatus[] = [];
  const live = openLiveSocket<RunSnapshotFrame>({
    run: 'r1',
    token: 'sekret',
    since,
    seqOf: runStreamSeq,
    onSnapshot: (f) => snapshots.push(f),
    onEvents: (e) => batches.push(e),
    onStatus: (s) => statuses.push(s),
    createSocket: (url) => {
      const s = new FakeSocket(url);
      sockets.push(s);
      return s;
    },
    schedule: (fn, ms) => timers.push({ fn, ms }),
    cancelSchedule: () => {},
    random: () => 0.5,
    location: { protocol: 'http:', host: 'apex.test' },
  });
  return { live, sockets, timers, snapshots, batches, statuses };
}

describe('socketUrl', () => {
  it('builds ws and wss URLs with run, since and token', () => {
    expect(socketUrl({ protocol: 'http:', host: 'h:1' }, {})).toBe('ws://h:1/api/v1/ws');
    expect(socketUrl({ protocol: 'https:', host: 'h' }, { run: 'r 1', since: 0, token: 't' })).toBe(
      'wss://h/api/v1/ws?run=r+1&since=0&token=t',
    );
  });
});

describe('backoffDelay', () => {
  it('grows exponentially up to a cap, with jitter in the upper half', () => {
    expect(backoffDelay(0, () => 0)).toBe(125);
    expect(backoffDelay(0, () => 1)).toBe(250);
    expect(backoffDelay(3, () => 1)).toBe(2_000);
    expect(backoffDelay(50, () => 1)).toBe(10_000);
  });
});

describe('openLiveSocket', () => {
  it('resumes after a drop with the last seq it saw', () => {
    const h = harness();
    expect(h.sockets[0]!.url).toBe('ws://apex.test/api/v1/ws?run=r1&token=sekret');
    h.sockets[0]!.send({ type: 'snapshot', run: run('r1', []), seq: 4 });
    h.sockets[0]!.send({ type: 'events', events: [taskEvent('r1', 5, 'a', 'queued'), taskEvent('r1', 6, 'a', 'running')] });
    h.sockets[0]!.send({ type: 'events', events: [{ kind: 'progress', run_id: 'r1', task_id: 'a', attempt: 1, progress: 0.5, message: null, at_ms: 1 }] });
    expect(h.snapshots).toHaveLength(1);
    expect(h.batches.map((b) => b.length)).toEqual([2, 1]);

    h.sockets[0]!.drop();
    expect(h.statuses.at(-1)).toBe('reconnecting');
    expect(h.timers).toHaveLength(1);
    h.timers[0]!.fn();
    expect(h.sockets[1]!.url).toBe('ws://apex.test/api/v1/ws?run=r1&since=6&token=sekret');
  });

  it('resumes after seq_to: the frame accounts for events it coalesced away', () => {
    const h = harness();
    h.sockets[0]!.send({ type: 'snapshot', run: run('r1', []), seq: 4 });
    // Seqs 5..7 were a's queued, running, succeeded: only the last is sent, and a log after it.
    h.sockets[0]!.send({ type: 'events', seq_from: 5, seq_to: 9, events: [taskEvent('r1', 7, 'a', 'succeeded')] });
    h.sockets[0]!.drop();
    h.timers[0]!.fn();
    expect(h.sockets[1]!.url).toBe('ws://apex.test/api/v1/ws?run=r1&since=9&token=sekret');
  });

  it('tells its cursor, for the next subscription to resume from, and hands over the frame', () => {
    const frames: unknown[] = [];
    const h = harness(20);
    expect(h.live.cursor()).toBe(20);
    h.sockets[0]!.onmessage?.({
      data: JSON.stringify({ type: 'events', seq_from: 21, seq_to: 30, run: { id: 'r1' }, events: [taskEvent('r1', 25, 'a', 'queued')] }),
    });
    expect(h.live.cursor()).toBe(30);
    h.live.close();
    expect(h.live.cursor()).toBe(30);
    const g = openLiveSocket({
      run: 'r1',
      since: 3,
      seqOf: runStreamSeq,
      onSnapshot: () => {},
      onEvents: (_events, frame) => frames.push(frame.run),
      createSocket: (url) => (h.sockets[1] = new FakeSocket(url)),
      location: { protocol: 'http:', host: 'h' },
    });
    h.sockets[1]!.send({ type: 'events', seq_to: 4, run: { id: 'r1', state: 'running' }, events: [] });
    expect(frames).toEqual([{ id: 'r1', state: 'running' }]);
    g.close();
  });

  it('starts resumed when its owner already holds the state, and is live once open', () => {
    const h = harness(41);
    expect(h.sockets[0]!.url).toBe('ws://apex.test/api/v1/ws?run=r1&since=41&token=sekret');
    expect(h.statuses).toEqual(['connecting']);
    // A finished run replays nothing: opening is all the sign of life there is.
    h.sockets[0]!.onopen?.({});
    expect(h.statuses.at(-1)).toBe('live');
    h.sockets[0]!.send({ type: 'events', events: [taskEvent('r1', 42, 'a', 'queued')] });
    h.sockets[0]!.drop();
    h.timers[0]!.fn();
    expect(h.sockets[1]!.url).toBe('ws://apex.test/api/v1/ws?run=r1&since=42&token=sekret');
  });

  it('waits for the snapshot, not the open, when it starts fresh', () => {
    const h = harness();
    h.sockets[0]!.onopen?.({});
    expect(h.statuses).toEqual(['connecting']);
  });

  it('backs off further on each failed attempt and resets once frames flow', () => {
    const h = harness();
    h.sockets[0]!.drop();
    h.timers[0]!.fn();
    h.sockets[1]!.drop();
    h.timers[1]!.fn();
    expect(h.timers.map((t) => t.ms)).toEqual([backoffDelay(0, () => 0.5), backoffDelay(1, () => 0.5)]);
    h.sockets[2]!.send({ type: 'snapshot', run: run('r1', []), seq: 1 });
    h.sockets[2]!.drop();
    expect(h.timers[2]!.ms).toBe(backoffDelay(0, () => 0.5));
  });

  it('on resync drops the cursor and reconnects at once for a fresh snapshot', () => {
    const h = harness();
    h.sockets[0]!.send({ type: 'snapshot', run: run('r1', []), seq: 4 });
    h.sockets[0]!.send({ type: 'resync', reason: 'slow client' });
    expect(h.sockets[0]!.closed).toBe(true);
    expect(h.sockets).toHaveLength(2);
    expect(h.sockets[1]!.url).toBe('ws://apex.test/api/v1/ws?run=r1&token=sekret');
    // The old socket's close event must not schedule a second connection.
    h.sockets[0]!.drop();
    expect(h.timers).toHaveLength(0);
  });

  it('stops for good when closed', () => {
    const h = harness();
    h.live.close();
    expect(h.sockets[0]!.closed).toBe(true);
    h.sockets[0]!.drop();
    expect(h.timers).toHaveLength(0);
    expect(h.statuses.at(-1)).toBe('closed');
  });

  it('ignores frames that are not JSON', () => {
    const h = harness();
    h.sockets[0]!.onmessage?.({ data: 'not json' });
    expect(h.snapshots).toHaveLength(0);
  });
});

describe('stream cursors', () => {
  it('reads the run seq from stored events and the bus seq from run news', () => {
    expect(runStreamSeq(taskEvent('r', 3, 'a', 'queued'))).toBe(3);
    expect(runStreamSeq({ kind: 'queues', seq: 1, queues: [] })).toBeNull();
    expect(busStreamSeq(taskEvent('r', 3, 'a', 'queued'))).toBeNull();
    expect(busStreamSeq({ kind: 'run_updated', seq: 8, run: run('r', []) })).toBe(8);
  });
});
