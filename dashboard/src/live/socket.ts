// The one WebSocket client: connects to /api/v1/ws, hands snapshots and event batches to
// its owner, reconnects with exponential backoff and resumes with `?since=<last seq>` so
// no event is missed (an owner that loaded the state itself starts resumed, with `since`
// set, so a big run is not sent twice). A `resync` frame (we fell behind, or the server no longer has our
// `since`) drops the cursor and reconnects at once, which yields a fresh snapshot.

import type { EventsFrame, LiveEvent, ServerFrame } from '../api/types';

export type SocketStatus = 'connecting' | 'live' | 'reconnecting' | 'closed';

/** The part of the browser WebSocket this module uses, so tests can drive a fake. */
export interface SocketLike {
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: unknown) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  close(): void;
}

export interface LiveSocketOptions<Snapshot> {
  /** Subscribe to one run's events; without it, the global stream. */
  run?: string;
  /** Extra query parameters choosing what a run's stream carries (`subscriptionParams`). */
  params?: Record<string, string>;
  token?: string | null;
  /**
   * Resume after this seq instead of starting with a snapshot: the owner already holds the
   * state up to it (a run it loaded over REST), so the server only replays what followed.
   */
  since?: number | null;
  /** Which events move the resume cursor: each stream numbers a different kind. */
  seqOf: (event: LiveEvent) => number | null;
  onSnapshot: (frame: Snapshot) => void;
  /** A frame's events, and the frame (its `run` summary carries the run's counts). */
  onEvents: (events: LiveEvent[], frame: EventsFrame) => void;
  onStatus?: (status: SocketStatus) => void;
  /** Injection points for tests; default to the browser's. */
  createSocket?: (url: string) => SocketLike;
  schedule?: (fn: () => void, ms: number) => unknown;
  cancelSchedule?: (handle: unknown) => void;
  random?: () => number;
  location?: { protocol: string; host: string };
}

export interface LiveSocket {
  close(): void;
  /**
   * The last seq this stream accounted for (null before its snapshot): where another
   * subscription to the same run resumes exactly.
   */
  cursor(): number | null;
}

const BASE_DELAY_MS = 250;
const MAX_DELAY_MS = 10_000;

/** Full jitter around an exponential curve, so many tabs do not reconnect in lockstep. */
export function backoffDelay(failures: number, random: () => number = Math.random): number {
  const ceiling = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** Math.min(failures, 16));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

export function socketUrl(
  location: { protocol: string; host: string },
  params: { run?: string; since?: number | null; token?: string | null; params?: Record<string, string> },
): string {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const query = new URLSearchParams();
  if (params.run) query.set('run', params.run);
  // What the run's stream carries (`detail`, `tasks`: see subscription.ts).
  for (const [k, v] of Object.entries(params.params ?? {})) query.set(k, v);
  if (params.since !== null && params.since !== undefined) query.set('since', String(params.since));
  if (params.token) query.set('token', params.token);
  const qs = query.toString();
  return `${scheme}//${location.host}/api/v1/ws${qs ? `?${qs}` : ''}`;
}

export function openLiveSocket<Snapshot>(options: LiveSocketOptions<Snapshot>): LiveSocket {
  const createSocket = options.createSocket ?? ((url: string) => new WebSocket(url) as unknown as SocketLike);
  const schedule = options.schedule ?? ((fn: () => void, ms: number) => setTimeout(fn, ms));
  const cancelSchedule = options.cancelSchedule ?? ((handle: unknown) => clearTimeout(handle as number));
  const random = options.random ?? Math.random;
  const location = options.location ?? window.location;

  let since: number | null = options.since ?? null;
  let failures = 0;
  let socket: SocketLike | null = null;
  let timer: unknown = null;
  let closed = false;

  const setStatus = (status: SocketStatus) => options.onStatus?.(status);

  const connect = () => {
    timer = null;
    if (closed) return;
    setStatus(failures === 0 ? 'connecting' : 'reconnecting');
    const ws = createSocket(socketUrl(location, { run: options.run, since, token: options.token, params: options.params }));
    socket = ws;
    ws.onopen = () => {
      // A resumed stream sends nothing until something happens (a finished run: never),
      // so an open socket is what says it is live. A fresh one waits for its snapshot.
      if (socket === ws && since !== null) setStatus('live');
    };
    ws.onmessage = (message) => {
      if (socket !== ws || typeof message.data !== 'string') return;
      let frame: ServerFrame;
      try {
        frame = JSON.parse(message.data) as ServerFrame;
      } catch {
        return;
      }
      handleFrame(ws, frame);
    };
    ws.onclose = () => {
      if (socket !== ws) return;
      socket = null;
      if (closed) return;
      setStatus('reconnecting');
      timer = schedule(connect, backoffDelay(failures++, random));
    };
    ws.onerror = () => {
      // A close event always follows; reconnecting happens there.
    };
  };

  const handleFrame = (ws: SocketLike, frame: ServerFrame) => {
    switch (frame.type) {
      case 'snapshot':
        since = frame.seq;
        failures = 0;
        setStatus('live');
        options.onSnapshot(frame as Snapshot);
        break;
      case 'events': {
        for (const event of frame.events) {
          const seq = options.seqOf(event);
          if (seq !== null && (since === null || seq > since)) since = seq;
        }
        // Events a later one superseded within the frame are accounted for up to seq_to.
        if (typeof frame.seq_to === 'number' && (since === null || frame.seq_to > since)) since = frame.seq_to;
        failures = 0;
        setStatus('live');
        options.onEvents(frame.events, frame);
        break;
      }
      case 'resync':
        since = null;
        socket = null;
        ws.close();
        setStatus('reconnecting');
        connect();
        break;
    }
  };

  connect();

  return {
    close() {
      closed = true;
      if (timer !== null) cancelSchedule(timer);
      const ws = socket;
      socket = null;
      ws?.close();
      setStatus('closed');
    },
    cursor: () => since,
  };
}

/** Cursor for a run's stream: its stored events (task, run, log) carry the run's seq. */
export function runStreamSeq(event: LiveEvent): number | null {
  return (event.kind === 'task' || event.kind === 'run' || event.kind === 'log') && typeof event.seq === 'number' ? event.seq : null;
}

/** Cursor for the global stream: only the bus-numbered kinds carry the bus seq. */
export function busStreamSeq(event: LiveEvent): number | null {
  return (event.kind === 'run_created' || event.kind === 'run_updated') && typeof event.seq === 'number' ? event.seq : null;
}
