"""One worker process: reads tasks from its queue streams, runs them under a slot counter,
and reports through the outbox.

```text
            ┌──────────── reader ─────────────┐   XREADGROUP COUNT <free slots>
 P:queue:* ─┤ parse → take slot → asyncio task├──▶ handler ──▶ outbox ──▶ P:results
            └─────────────────────────────────┘                  ▲
 P:control ──▶ control (cancel / drain)                          │ started, progress, log,
 lease: XCLAIM in-flight entries every lease_interval_s          │ heartbeat, released,
 heartbeat: every heartbeat_interval_s ──────────────────────────┘ worker_stopped
```

Shutdown (SIGTERM, `drain`, or an empty queue in burst mode): the reader stops, in-flight
attempts get the grace period to finish, the rest are cancelled and `released`, then
`worker_stopped` is the last message sent.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import time
from collections.abc import Awaitable
from functools import partial
from typing import Any, Literal

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from apex_worker import telemetry
from apex_worker.admission import AgentRefused, admit
from apex_worker.agents.transport import http_clients
from apex_worker.codec import EncodeError, dumps
from apex_worker.config import WorkerConfig
from apex_worker.context import Context
from apex_worker.execute import execute
from apex_worker.logcap import LogBudget
from apex_worker.outbox import Outbox
from apex_worker.protocol import (
    WORKER_GROUP,
    AttemptRef,
    Cancel,
    Drain,
    Heartbeat,
    Keys,
    LogLine,
    MalformedMessage,
    Progress,
    Released,
    Started,
    TaskError,
    TaskMessage,
    TaskResult,
    WorkerInfo,
    WorkerState,
    WorkerStopped,
    decode_json,
    parse_control,
    parse_task,
)
from apex_worker.providers import ProviderSpec, load_providers
from apex_worker.registry import Registry, default_registry
from apex_worker.slots import Slots
from apex_worker.spawn import Spawn
from apex_worker.version import __version__

log = logging.getLogger("apex_worker")

_REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)
_MAX_CLAIM_IDS = 500
# Bound on finished entries awaiting acknowledgement whose leases are still renewed.
_MAX_UNACKED = 100_000
#: At shutdown, how long cancelled attempts get to unwind before they are abandoned.
_RELEASE_TIMEOUT_S = 5.0


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class Running:
    """An attempt this worker is executing."""

    __slots__ = ("cancel_reason", "logs", "ref", "stream", "task")

    def __init__(self, ref: AttemptRef, stream: str, logs: LogBudget) -> None:
        self.ref = ref
        #: The queue stream key the entry came from (for lease renewal).
        self.stream = stream
        #: What is left of the attempt's log budget.
        self.logs = logs
        self.task: asyncio.Task[None] | None = None
        #: Why the worker cancelled it, if it did; tells the cancellation what to report.
        self.cancel_reason: Literal["cancelled", "released"] | None = None


class Worker:
    """Build with a config (and optionally a registry), then `await run()`. `stop()` and
    `drain()` may be called from signal handlers or other coroutines."""

    def __init__(self, config: WorkerConfig, registry: Registry | None = None) -> None:
        config.validate()
        self.config = config
        self.id = config.worker_id
        self.registry = registry if registry is not None else default_registry
        #: The providers the operator declared; agents name one of them.
        self.providers = load_providers(config.providers_file)
        self.keys = Keys(config.redis_prefix)
        self.state: WorkerState = "running"
        # (queue stream key, queue name) for each queue, in the order given.
        self._streams = [(self.keys.queue(q), q) for q in config.queues]
        self._slots = Slots(config.concurrency)
        # Attempts in progress, by (stream, entry id): unique even if the same attempt is
        # delivered twice.
        self._in_flight: dict[tuple[str, str], Running] = {}
        # Entries whose attempt ended here but which the orchestrator has not yet
        # acknowledged: their leases are renewed too, or an orchestrator that is slow to
        # read results (a burst, a store outage) would take them for a dead worker's.
        self._unacked: set[tuple[str, str]] = set()
        self._started_at_ms = _now_ms()
        self._host = socket.gethostname()
        self._handler_names = self.registry.names()
        self._debug = log.isEnabledFor(logging.DEBUG)
        # Shutdown: `_stopping` once requested; `_deadline` (loop time) is when unfinished
        # attempts get released; `_shutdown_wake` fires when in-flight empties or the
        # deadline moves.
        self._stopping = asyncio.Event()
        self._deadline = math.inf
        self._shutdown_wake = asyncio.Event()
        self._failed: BaseException | None = None
        # Connections, made in run(): a pool for the outbox, lease and setup, and one
        # dedicated connection for each blocking reader.
        self._redis: Redis | None = None
        self._reader: Redis | None = None
        self._control: Redis | None = None
        # CLIENT IDs of the two blocking connections, so shutdown can interrupt their
        # reads (CLIENT UNBLOCK) instead of cancelling a coroutine inside redis-py;
        # None until known, and again after a reconnect.
        self._reader_id: int | None = None
        self._control_id: int | None = None
        # Set when the background loops (control, lease, heartbeat) must end.
        self._closing = asyncio.Event()
        self._outbox: Outbox | None = None
        self._reader_rotation = 0
        #: Attempts that ignored cancellation at shutdown and were released while running.
        self.abandoned = 0

    # -- public surface --------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def stop(self, grace_s: float | None = None) -> None:
        """Stops taking work; in-flight attempts get `grace_s` (default: the configured
        grace) to finish, then are released. A second call can only shorten the grace."""
        grace = self.config.shutdown_grace_s if grace_s is None else grace_s
        deadline = asyncio.get_running_loop().time() + grace
        if deadline < self._deadline:
            self._deadline = deadline
            self._shutdown_wake.set()
        if not self._stopping.is_set():
            log.info("worker %s stopping (grace %.1fs)", self.id, grace)
            self._begin_stop()

    def drain(self) -> None:
        """Stops taking work and lets every in-flight attempt finish, however long."""
        if not self._stopping.is_set():
            log.info("worker %s draining", self.id)
            self._begin_stop()

    async def run(self) -> None:
        """Serves until stopped. Raises if Redis is unreachable at startup or a loop of
        the worker failed unexpectedly (after shutting down cleanly as far as it could)."""
        cfg = self.config
        self._redis = Redis.from_url(cfg.redis_url)
        self._reader = Redis.from_url(cfg.redis_url, single_connection_client=True)
        self._control = Redis.from_url(cfg.redis_url, single_connection_client=True)
        try:
            await self._ensure_groups()
            control_from = await self._control_tail()
            self._outbox = Outbox(
                self._redis,
                results_key=self.keys.results(),
                group=WORKER_GROUP,
                flush_batch=cfg.flush_batch,
                text_interval_s=cfg.text_interval_s,
            )
            self._outbox.start()
            self._send_heartbeat()
            log.info(
                "worker %s started: queues=%s concurrency=%d handlers=%s",
                self.id,
                ",".join(cfg.queues),
                cfg.concurrency,
                ",".join(self._handler_names),
            )
            log.info("providers: %s", self.providers.describe())
            reader = self._spawn("reader", self._read_loop())
            background = [
                self._spawn("control", self._control_loop(control_from)),
                self._spawn("lease", self._lease_loop()),
                self._spawn("heartbeat", self._heartbeat_loop()),
            ]
            await self._stopping.wait()
            await self._shutdown(reader, background)
        finally:
            for client in (self._reader, self._control, self._redis):
                await client.aclose()
            await http_clients.aclose()
        if self._failed is not None:
            raise RuntimeError("worker stopped after an internal error") from self._failed

    # -- reading tasks ---------------------------------------------------------------

    async def _read_loop(self) -> None:
        cfg = self.config
        while not self._stopping.is_set():
            if self._slots.free == 0:
                await self._slots.wait_free()
                continue
            streams, count = self._plan_read(self._slots.free)
            block: int | None = cfg.block_ms
            if cfg.burst:
                # Burst mode ends on the first empty read with nothing in flight, so that
                # read must not wait; while attempts run, wait briefly for their slots.
                block = None if not self._in_flight else min(cfg.block_ms, 50)
            try:
                reply = await self._xreadgroup(streams, count, block)
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                log.warning("queue group vanished (Redis restarted?); creating it again")
                await self._ensure_groups()
                continue
            except _REDIS_DOWN as exc:
                log.warning("reader: Redis unavailable (%s); retrying", exc)
                await asyncio.sleep(1.0)
                continue
            if not reply:
                if cfg.burst and not self._in_flight:
                    log.info("burst: queues are empty, stopping")
                    self.stop()
                continue
            for stream, entries in reply:
                stream_key = stream.decode()
                queue = self._queue_name(stream_key)
                for msg_id, fields in entries:
                    self._slots.take()
                    self._dispatch(stream_key, queue, msg_id.decode(), fields)

    def _plan_read(self, free: int) -> tuple[dict[str, str], int]:
        """Streams to read and the COUNT, so that the entries returned never exceed
        `free`: XREADGROUP's COUNT applies to each stream separately."""
        n = len(self._streams)
        if n == 1:
            return {self._streams[0][0]: ">"}, free
        # Rotate the starting queue so a busy first queue cannot starve the others.
        start = self._reader_rotation = (self._reader_rotation + 1) % n
        order = [self._streams[(start + i) % n][0] for i in range(n)]
        if free >= n:
            return dict.fromkeys(order, ">"), free // n
        return dict.fromkeys(order[:free], ">"), 1

    async def _xreadgroup(self, streams: dict[str, str], count: int, block: int | None) -> Any:
        assert self._reader is not None
        try:
            if self._reader_id is None:
                self._reader_id = int(await self._reader.client_id())
            return await self._reader.xreadgroup(
                WORKER_GROUP,
                self.id,
                streams,  # type: ignore[arg-type]
                count=count,
                block=block,
            )
        except _REDIS_DOWN:
            self._reader_id = None  # it reconnects under a new id
            raise

    def _queue_name(self, stream_key: str) -> str:
        for key, name in self._streams:
            if key == stream_key:
                return name
        return stream_key.rsplit(":", 1)[-1]

    def _dispatch(
        self, stream: str, queue: str, msg_id: str, fields: dict[bytes, bytes] | None
    ) -> None:
        raw = fields.get(b"m") if fields else None
        try:
            if raw is None:
                raise MalformedMessage("entry has no `m` field")
            task = parse_task(raw)
        except MalformedMessage as exc:
            self._dead_letter(stream, msg_id, str(exc), raw if raw is not None else fields)
            self._slots.give_back()
            return
        ref = AttemptRef(task.run_id, task.task_id, task.attempt, self.id, queue, msg_id)
        logs = LogBudget(
            self.config.max_log_lines_per_attempt, self.config.max_log_bytes_per_attempt
        )
        running = Running(ref, stream, logs)
        self._in_flight[(stream, msg_id)] = running
        running.task = asyncio.create_task(self._run_attempt(running, task))

    def _dead_letter(self, stream: str, msg_id: str, reason: str, raw: object) -> None:
        assert self._outbox is not None
        log.warning("dead-lettered %s %s: %s", stream, msg_id, reason)
        self._send_dead(stream, msg_id, reason, raw)
        # Acknowledged so it is never delivered again: nobody can run it.
        self._outbox.ack(stream, msg_id)

    def _send_dead(self, stream: str, msg_id: str, reason: str, raw: object) -> None:
        assert self._outbox is not None
        if isinstance(raw, bytes):
            text = raw.decode("utf-8", "replace")
        elif isinstance(raw, dict):  # an entry without `m`: keep all its fields
            text = dumps({_text(k): _text(v) for k, v in raw.items()}).decode()
        else:
            text = ""
        # `stream` and `msg_id` go beyond the documented fields: they say where it was.
        dead = {
            "reason": reason,
            "raw": text,
            "at_ms": _now_ms(),
            "stream": stream,
            "msg_id": msg_id,
        }
        self._outbox.send(dumps(dead), self.keys.dead_letter())

    # -- running one attempt -----------------------------------------------------------

    async def _run_attempt(self, running: Running, task: TaskMessage) -> None:
        outbox = self._outbox
        assert outbox is not None
        ref = running.ref
        started_at_ms = _now_ms()
        outbox.send_started(running, Started(ref, started_at_ms))
        provider, refusal = self._admit(task)
        ctx = Context(
            run_id=task.run_id,
            task_id=task.task_id,
            attempt=task.attempt,
            idempotency_key=task.idempotency_key,
            worker_id=self.id,
            emit=partial(self._emit, running),
            loop=asyncio.get_running_loop(),
            agent=task.agent,
            provider=provider,
            timeout_s=task.timeout_s,
        )
        try:
            output: Any = None
            error: TaskError | None = refusal
            if refusal is None:
                with telemetry.execution(task, self.id) as span:
                    output, error = await execute(self.registry.get(task.handler), task, ctx)
                    span.finish(error)
        except asyncio.CancelledError:
            owned = self._finish(running)
            if running.cancel_reason is None:
                raise  # not ours (the loop is going away): let it end the task
            if owned:
                self._report_cancelled(running, started_at_ms, ctx)
            return
        except BaseException:
            self._finish(running)
            raise
        if not self._finish(running):
            return  # it ignored its cancellation at shutdown and was released already
        # No await from here on: a cancel arriving now finds the attempt already finished.
        children: list[Any] = []
        if isinstance(output, Spawn):
            output, children = output.output, output.children
        result = TaskResult(
            ref,
            "succeeded" if error is None else "failed",
            started_at_ms,
            _now_ms(),
            output,
            error,
            usage=ctx.usage,
            children=children,
        )
        outbox.send_result(running, self._encode_result(result))
        if self._debug:
            log.debug(
                "%s/%s#%d %s %s %dms",
                ref.run_id,
                ref.task_id,
                ref.attempt,
                task.handler,
                result.outcome if error is None else f"failed:{error.kind}",
                result.finished_at_ms - started_at_ms,
            )

    def _admit(self, task: TaskMessage) -> tuple[ProviderSpec | None, TaskError | None]:
        """The operator's provider for the task's agent, or the error the attempt fails
        with, before any handler runs, if the agent asks for what only the operator
        decides (an endpoint, a key, an undeclared provider)."""
        if task.agent is None:
            return None, None
        try:
            return admit(task.agent, self.providers), None
        except AgentRefused as exc:
            # Redis carried a task no orchestrator would send: someone may be probing.
            log.warning("refused %s/%s#%d: %s", task.run_id, task.task_id, task.attempt, exc)
            error = TaskError(
                kind="exception",
                error_type=type(exc).__name__,
                message=str(exc),
                retryable=False,
            )
            return None, error

    def _encode_result(self, result: TaskResult) -> bytes:
        try:
            payload = dumps(result.to_dict())
        except EncodeError as exc:
            return self._invalid_output(result, f"output is not JSON-serialisable: {exc}")
        if len(payload) > self.config.max_output_bytes:
            return self._invalid_output(
                result,
                f"result is {len(payload)} bytes, over the limit of {self.config.max_output_bytes}",
            )
        return payload

    @staticmethod
    def _invalid_output(result: TaskResult, message: str) -> bytes:
        result.outcome = "failed"
        result.output = None
        result.children = []
        result.error = TaskError(kind="invalid_output", message=message, retryable=False)
        return dumps(result.to_dict())

    def _report_cancelled(self, running: Running, started_at_ms: int, ctx: Context) -> None:
        assert self._outbox is not None
        now = _now_ms()
        if running.cancel_reason == "cancelled":
            error = TaskError(
                kind="cancelled", message="cancelled by the orchestrator", retryable=False
            )
            result = TaskResult(
                running.ref, "failed", started_at_ms, now, None, error, usage=ctx.usage
            )
            self._outbox.send_result(running, dumps(result.to_dict()))
        else:
            released = Released(running.ref, "worker shutting down", now)
            self._outbox.send(dumps(released.to_dict()))

    def _finish(self, running: Running) -> bool:
        """Frees the attempt's slot. False if shutdown already gave the attempt up."""
        assert self._outbox is not None
        self._end_log(running)
        self._outbox.end_text(running)
        key = (running.stream, running.ref.msg_id)
        if self._in_flight.pop(key, None) is None:
            return False
        if len(self._unacked) < _MAX_UNACKED:
            self._unacked.add(key)
        self._slots.give_back()
        if not self._in_flight and self._stopping.is_set():
            self._shutdown_wake.set()
        return True

    def _emit(self, running: Running, message: Progress | LogLine) -> None:
        """Sends what a handler reported. Streamed text is coalesced per attempt, and
        dropped once the attempt has ended (a sync handler's thread can outlive it);
        log lines are held to the attempt's log budget."""
        assert self._outbox is not None
        if isinstance(message, Progress) and message.text_delta is not None:
            if self._in_flight.get((running.stream, running.ref.msg_id)) is running:
                self._outbox.send_text(running, message)
            return
        if isinstance(message, LogLine):
            admitted = running.logs.admit(message)
            if admitted is None:
                return
            message = admitted
        self._outbox.send(dumps(message.to_dict()))

    def _end_log(self, running: Running) -> None:
        """Sends the line that says how much of the attempt's log was dropped, if any,
        ahead of its result."""
        assert self._outbox is not None
        summary = running.logs.take_summary()
        if summary is None:
            return
        ref = running.ref
        line = LogLine(
            ref.run_id, ref.task_id, ref.attempt, ref.worker_id, "warning", summary, _now_ms()
        )
        self._outbox.send(dumps(line.to_dict()))

    # -- control stream ----------------------------------------------------------------

    async def _control_tail(self) -> str:
        """The id of the control stream's last entry: reading from it (instead of `$`
        on each call) misses nothing sent after startup."""
        assert self._control is not None
        last: Any = await self._control.xrevrange(self.keys.control(), count=1)
        return str(last[0][0].decode()) if last else "0-0"

    async def _control_loop(self, last_id: str) -> None:
        assert self._control is not None
        key = self.keys.control()
        while not self._closing.is_set():
            try:
                if self._control_id is None:
                    self._control_id = int(await self._control.client_id())
                reply: Any = await self._control.xread(
                    {key: last_id}, count=100, block=self.config.block_ms
                )
            except _REDIS_DOWN as exc:
                self._control_id = None
                log.warning("control: Redis unavailable (%s); retrying", exc)
                await self._sleep_unless_closing(1.0)
                continue
            for _stream, entries in reply or ():
                for msg_id, fields in entries:
                    last_id = msg_id.decode()
                    self._on_control(last_id, fields)

    def _on_control(self, msg_id: str, fields: dict[bytes, bytes]) -> None:
        raw = fields.get(b"m")
        try:
            if raw is None:
                raise MalformedMessage("entry has no `m` field")
            message = parse_control(decode_json(raw))
        except MalformedMessage as exc:
            # Every worker follows the control stream, so each one records what it could
            # not understand; there is nothing to acknowledge (no group).
            log.warning("ignored control message %s: %s", msg_id, exc)
            reason = f"control message unreadable by worker {self.id}: {exc}"
            self._send_dead(self.keys.control(), msg_id, reason, raw)
            return
        if isinstance(message, Cancel):
            self._cancel(message)
        elif isinstance(message, Drain) and message.worker_id in (self.id, "*"):
            self.drain()

    def _cancel(self, message: Cancel) -> None:
        for running in self._in_flight.values():
            ref = running.ref
            same = (ref.run_id, ref.task_id, ref.attempt) == (
                message.run_id,
                message.task_id,
                message.attempt,
            )
            if same and running.cancel_reason is None and running.task is not None:
                log.info("cancelling %s/%s#%d", ref.run_id, ref.task_id, ref.attempt)
                running.cancel_reason = "cancelled"
                running.task.cancel()

    # -- leases and heartbeats ---------------------------------------------------------

    async def _lease_loop(self) -> None:
        while await self._sleep_unless_closing(self.config.lease_interval_s):
            try:
                await self._renew_leases()
            except (*_REDIS_DOWN, ResponseError) as exc:
                log.warning("lease renewal failed (%s)", exc)

    async def _renew_leases(self) -> None:
        """Re-claims every entry this worker holds with min-idle 0, which resets its idle
        time: the orchestrator reclaims only entries idle past its lease timeout, so a
        long attempt on a live worker is never taken for a dead one. Entries whose
        attempt ended are held until the orchestrator acknowledges them; an entry the
        claim no longer returns has been acknowledged and is forgotten."""
        assert self._redis is not None
        by_stream: dict[str, list[str]] = {}
        for stream, msg_id in [*self._in_flight.keys(), *self._unacked]:
            by_stream.setdefault(stream, []).append(msg_id)
        if not by_stream:
            return
        pipe = self._redis.pipeline(transaction=False)
        chunks: list[tuple[str, list[str]]] = []
        for stream, ids in by_stream.items():
            for i in range(0, len(ids), _MAX_CLAIM_IDS):
                chunk = ids[i : i + _MAX_CLAIM_IDS]
                chunks.append((stream, chunk))
                pipe.xclaim(stream, WORKER_GROUP, self.id, 0, list[Any](chunk), justid=True)
        replies = await pipe.execute()
        held: set[tuple[str, str]] = set()
        for (stream, _), claimed in zip(chunks, replies, strict=True):
            for c in claimed or ():
                held.add((stream, c.decode() if isinstance(c, bytes) else str(c)))
        self._unacked &= held

    async def _heartbeat_loop(self) -> None:
        while await self._sleep_unless_closing(self.config.heartbeat_interval_s):
            self._send_heartbeat()

    async def _sleep_unless_closing(self, seconds: float) -> bool:
        """Sleeps; False (at once) when the background loops must end."""
        try:
            async with asyncio.timeout(seconds):
                await self._closing.wait()
        except TimeoutError:
            return True
        return False

    def _send_heartbeat(self) -> None:
        assert self._outbox is not None
        cfg = self.config
        info = WorkerInfo(
            id=self.id,
            host=self._host,
            pid=os.getpid(),
            queues=list(cfg.queues),
            concurrency=cfg.concurrency,
            in_flight=len(self._in_flight),
            version=__version__,
            started_at_ms=self._started_at_ms,
            state=self.state,
            heartbeat_interval_s=float(cfg.heartbeat_interval_s),
            handlers=self._handler_names,
        )
        self._outbox.send(dumps(Heartbeat(info, _now_ms()).to_dict()))

    # -- setup and shutdown ------------------------------------------------------------

    async def _ensure_groups(self) -> None:
        """Creates the `workers` group on each queue if missing. From id 0, not `$`: a
        task added before any group existed was still meant to run."""
        assert self._redis is not None
        for stream, _queue in self._streams:
            try:
                await self._redis.xgroup_create(stream, WORKER_GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def _begin_stop(self) -> None:
        self.state = "draining"
        self._stopping.set()
        self._slots.wake()
        if not self._in_flight:
            self._shutdown_wake.set()

    def _spawn(self, name: str, coro: Awaitable[None]) -> asyncio.Task[None]:
        async def supervised() -> None:
            try:
                await coro
            except Exception as exc:
                log.exception("worker %s: %s loop failed; shutting down", self.id, name)
                self._failed = exc
                self.stop()

        return asyncio.create_task(supervised(), name=f"apex-{name}")

    async def _unblock(self, client_id: int | None) -> None:
        """Ends a blocking read on another connection now rather than after `block_ms`."""
        if client_id is None or self._redis is None:
            return
        try:
            await self._redis.client_unblock(client_id)
        except (*_REDIS_DOWN, ResponseError):
            pass

    async def _shutdown(
        self, reader: asyncio.Task[None], background: list[asyncio.Task[None]]
    ) -> None:
        assert self._outbox is not None
        await self._unblock(self._reader_id)
        # The reader finishes its current read, dispatching what it got: those entries
        # are ours now, so they run (or are released) like the rest.
        await reader
        self._send_heartbeat()
        await self._wait_for_in_flight()
        # Background loops stop first, so no heartbeat slips between the releases and
        # `worker_stopped`; leases no longer matter for attempts about to be released.
        # They stop on a flag, not by cancellation: a coroutine cancelled inside a redis-py
        # call can swallow the cancellation and never end.
        self._closing.set()
        await self._unblock(self._control_id)
        _, stuck = await asyncio.wait(background, timeout=self.config.block_ms / 1000 + 5)
        for task in stuck:
            log.warning("background loop %s did not stop; abandoning it", task.get_name())
        if self._in_flight:
            log.info("releasing %d unfinished attempts", len(self._in_flight))
            for running in self._in_flight.values():
                if running.cancel_reason is None:
                    running.cancel_reason = "released"
                if running.task is not None:
                    running.task.cancel()
            tasks = [r.task for r in self._in_flight.values() if r.task is not None]
            await asyncio.wait(tasks, timeout=_RELEASE_TIMEOUT_S)
            # A handler that swallows CancelledError must not keep the process alive.
            for running in list(self._in_flight.values()):
                log.warning("attempt %s ignored cancellation; released anyway", running.ref)
                self.abandoned += 1
                released = Released(running.ref, "worker shutting down", _now_ms())
                self._end_log(running)
                self._outbox.end_text(running)
                self._outbox.send(dumps(released.to_dict()))
                self._in_flight.pop((running.stream, running.ref.msg_id), None)
        self._outbox.send(dumps(WorkerStopped(self.id, _now_ms()).to_dict()))
        await self._outbox.close()
        log.info("worker %s stopped (%d messages sent)", self.id, self._outbox.sent)

    async def _wait_for_in_flight(self) -> None:
        loop = asyncio.get_running_loop()
        while self._in_flight:
            remaining = self._deadline - loop.time()
            if remaining <= 0:
                return
            self._shutdown_wake.clear()
            try:
                async with asyncio.timeout(None if math.isinf(remaining) else remaining):
                    await self._shutdown_wake.wait()
            except TimeoutError:
                return
