"""What a handler knows about the attempt it runs, and its way to report back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Literal, TypeAlias

from apex_worker.protocol import LogLine, Progress

LogLevel: TypeAlias = Literal["debug", "info", "warning", "error"]
_LEVELS = frozenset(("debug", "info", "warning", "error"))


class Context:
    """The third argument of every handler.

    `progress` and `log` are coroutines so that handlers `await` them like any other I/O;
    they only queue a message for the worker's outbox and never wait on Redis. A sync
    handler (which runs in a thread) calls them with
    `asyncio.run_coroutine_threadsafe(ctx.log("…"), ctx.loop).result()`.
    """

    __slots__ = ("_emit", "attempt", "idempotency_key", "loop", "run_id", "task_id", "worker_id")

    def __init__(
        self,
        *,
        run_id: str,
        task_id: str,
        attempt: int,
        idempotency_key: str,
        worker_id: str,
        emit: Callable[[Progress | LogLine], None],
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.run_id = run_id
        self.task_id = task_id
        self.attempt = attempt
        #: Stable for every delivery of this attempt; pass it to external systems.
        self.idempotency_key = idempotency_key
        self.worker_id = worker_id
        #: The worker's event loop, for sync handlers that report from their thread.
        self.loop = loop
        self._emit = emit

    async def progress(self, fraction: float | None = None, message: str = "") -> None:
        """Reports how far the attempt got: `fraction` in [0, 1] when known."""
        if fraction is not None:
            fraction = min(1.0, max(0.0, float(fraction)))
        self._emit(
            Progress(
                run_id=self.run_id,
                task_id=self.task_id,
                attempt=self.attempt,
                worker_id=self.worker_id,
                at_ms=time.time_ns() // 1_000_000,
                progress=fraction,
                message=str(message),
            )
        )

    async def log(self, message: str, level: LogLevel = "info") -> None:
        """Writes a line to the task's log, shown by the CLI and the dashboard."""
        if level not in _LEVELS:
            raise ValueError(f"level must be one of {sorted(_LEVELS)}, not {level!r}")
        self._emit(
            LogLine(
                run_id=self.run_id,
                task_id=self.task_id,
                attempt=self.attempt,
                worker_id=self.worker_id,
                level=level,
                message=str(message),
                at_ms=time.time_ns() // 1_000_000,
            )
        )

    def __repr__(self) -> str:
        return f"Context({self.run_id}/{self.task_id}#{self.attempt} on {self.worker_id})"
