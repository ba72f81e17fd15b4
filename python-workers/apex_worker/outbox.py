"""Every write the worker makes goes through one outbox: messages queue here and one
coroutine flushes them to Redis in a single pipeline (no transaction). A task therefore
costs no Redis round trip of its own.

Group commit, with no timer: an idle outbox sends as soon as the event loop has finished
its current pass (so the `started` and the result of an attempt that completes without
waiting share one pipeline, and the `started` is dropped), and while a pipeline is on its
way, whatever is queued meanwhile waits for it and goes out in the next one. A lone task
thus pays no linger at all, and under load the batches grow with the load.

Order is kept: commands run in the order they were queued, so a `result` always follows
its `started`, and `worker_stopped` follows every result.

Streamed text (progress messages with a `text_delta`) is coalesced per attempt: at most
one such message every `text_interval_s`, carrying every delta since the previous one,
so a model emitting 100 tokens a second costs ~10 messages, not 100. The attempt's last
text is queued before its result.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from apex_worker.codec import dumps
from apex_worker.protocol import MESSAGE_FIELD, Progress, Started

log = logging.getLogger("apex_worker.outbox")

# One queued command: (op, key, payload). `payload` is the encoded message for XADD,
# a `Started` encoded only if still needed at flush time, a `_TextStream` whose queued
# message is encoded at flush time, or the entry id for XACK.
_XADD, _XADD_STARTED, _XADD_TEXT, _XACK = 0, 1, 2, 3
_Command = tuple[int, str, Any]


class _TextStream:
    """The streamed text of one attempt on its way out."""

    __slots__ = ("next_at", "pending", "queued", "timer")

    def __init__(self) -> None:
        # In `_queued`, not yet flushed: later deltas still join it.
        self.queued: Progress | None = None
        # Held back until `next_at` (loop time), when `timer` queues it.
        self.pending: Progress | None = None
        self.next_at = 0.0
        self.timer: asyncio.TimerHandle | None = None

    def take_queued(self) -> Progress | None:
        message, self.queued = self.queued, None
        return message


def _join(into: Progress, delta: Progress) -> None:
    into.text_delta = (into.text_delta or "") + (delta.text_delta or "")
    into.at_ms = delta.at_ms
    if delta.message:
        into.message = delta.message
    if delta.progress is not None:
        into.progress = delta.progress


class Outbox:
    def __init__(
        self,
        redis: Redis,
        *,
        results_key: str,
        group: str,
        flush_batch: int = 200,
        text_interval_s: float = 0.1,
    ) -> None:
        self._redis = redis
        self._results_key = results_key
        self._group = group
        self._batch = flush_batch
        self._text_interval = text_interval_s
        # Streamed text of attempts still running, by the attempt's key.
        self._text: dict[object, _TextStream] = {}
        # Commands waiting for the next flush; None marks a `started` dropped because its
        # result arrived in the same batch.
        self._queued: list[_Command | None] = []
        # Where each still-queued `started` sits in `_queued`, by the attempt's key.
        self._started_at: dict[object, int] = {}
        # Set when the flusher has something to do: the first queued command, or closing.
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        # Size of the batch being sent (it is out of `_queued` while Redis is retried).
        self._flushing = 0
        #: Commands sent so far (for tests and the shutdown log line).
        self.sent = 0

    def __len__(self) -> int:
        return len(self._queued)

    def send(self, payload: bytes, stream: str | None = None) -> None:
        """Queues an encoded message for `stream` (the results stream by default)."""
        self._push((_XADD, stream or self._results_key, payload))

    def send_started(self, key: object, started: Started) -> None:
        """Queues a `started`; encoded at flush time, and dropped if the attempt's result
        (queued with the same `key`) makes it to the same batch."""
        self._started_at[key] = len(self._queued)
        self._push((_XADD_STARTED, self._results_key, started))

    def send_result(self, key: object, payload: bytes) -> None:
        index = self._started_at.pop(key, None)
        if index is not None:
            self._queued[index] = None
        self._push((_XADD, self._results_key, payload))

    def send_text(self, key: object, progress: Progress) -> None:
        """Queues a progress message with a `text_delta` for the attempt `key`, joined
        with the attempt's other deltas so that at most one goes out per interval."""
        text = self._text.get(key)
        if text is None:
            text = self._text[key] = _TextStream()
        held = text.queued if text.queued is not None else text.pending
        if held is not None:
            _join(held, progress)
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now >= text.next_at:
            self._queue_text(text, progress, now)
        else:
            text.pending = progress
            text.timer = loop.call_at(text.next_at, self._release_text, key)

    def end_text(self, key: object) -> None:
        """The attempt `key` ended: its held-back text is queued now, ahead of its result."""
        text = self._text.pop(key, None)
        if text is None:
            return
        if text.timer is not None:
            text.timer.cancel()
        if text.pending is not None:
            self._queue_text(text, text.pending, 0.0)
            text.pending = None

    def _release_text(self, key: object) -> None:
        text = self._text.get(key)
        if text is None or text.pending is None:
            return
        message, text.pending, text.timer = text.pending, None, None
        self._queue_text(text, message, asyncio.get_running_loop().time())

    def _queue_text(self, text: _TextStream, message: Progress, now: float) -> None:
        text.queued = message
        text.next_at = now + self._text_interval
        self._push((_XADD_TEXT, self._results_key, text))

    def ack(self, stream: str, msg_id: str) -> None:
        self._push((_XACK, stream, msg_id))

    def _push(self, command: _Command) -> None:
        queued = self._queued
        queued.append(command)
        if len(queued) == 1:
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="apex-outbox")

    async def _run(self) -> None:
        while True:
            if not self._queued:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if len(self._queued) < self._batch and not self._closing:
                # One pass of the loop: every attempt woken by the same read (and the
                # result of each that finishes without waiting) joins this pipeline.
                await asyncio.sleep(0)
            batch, self._queued = self._queued, []
            self._started_at.clear()
            await self._flush(batch)

    async def close(self, timeout_s: float = 10.0) -> None:
        """Flushes everything queued, then stops. Gives up after `timeout_s` if Redis
        stays unreachable, logging how much was lost."""
        self._closing = True
        for key in list(self._text):
            self.end_text(key)
        self._wake.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
        except TimeoutError:
            self._task.cancel()
            lost = len(self._queued) + self._flushing
            log.error("outbox: Redis unreachable at exit; %d messages lost", lost)

    @staticmethod
    def _encode(batch: list[_Command | None]) -> list[_Command]:
        """The batch as plain XADD and XACK commands, messages encoded."""
        commands: list[_Command] = []
        for command in batch:
            if command is None:
                continue
            op, key, payload = command
            if op == _XADD_STARTED:
                commands.append((_XADD, key, dumps(payload.to_dict())))
            elif op == _XADD_TEXT:
                message = payload.take_queued()
                if message is not None:
                    commands.append((_XADD, key, dumps(message.to_dict())))
            else:
                commands.append(command)
        return commands

    async def _flush(self, batch: list[_Command | None]) -> None:
        commands = self._encode(batch)
        self._flushing = len(commands)
        delay = 0.05
        while True:
            pipe = self._redis.pipeline(transaction=False)
            for op, key, payload in commands:
                if op == _XADD:
                    pipe.execute_command("XADD", key, "*", MESSAGE_FIELD, payload)
                else:
                    pipe.execute_command("XACK", key, self._group, payload)
            try:
                replies = await pipe.execute(raise_on_error=False)
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                # Keep the batch and retry: a duplicate result is harmless (results are
                # keyed by attempt), a lost one would leave the task running forever.
                log.warning("outbox: Redis unavailable (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            except Exception:
                # Anything else would fail again the same way; the outbox must live on.
                log.exception("outbox: dropped a batch of %d commands", len(commands))
                self._flushing = 0
                return
            errors = [r for r in replies if isinstance(r, Exception)]
            if errors:
                log.error(
                    "outbox: %d of %d commands failed: %s", len(errors), len(commands), errors[0]
                )
            self.sent += len(commands)
            self._flushing = 0
            return
