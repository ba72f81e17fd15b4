"""What a handler knows about the attempt it runs, and its way to report back: progress,
logs, streamed text and the tokens it spent."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Literal, TypeAlias

from apex_worker.protocol import AgentConfig, LogLine, Progress, Usage
from apex_worker.providers import ProviderSpec

LogLevel: TypeAlias = Literal["debug", "info", "warning", "error"]
_LEVELS = frozenset(("debug", "info", "warning", "error"))


class Context:
    """The third argument of every handler.

    `progress` and `log` are coroutines so that handlers `await` them like any other I/O;
    they only queue a message for the worker's outbox and never wait on Redis. A sync
    handler (which runs in a thread) calls them with
    `asyncio.run_coroutine_threadsafe(ctx.log("…"), ctx.loop).result()`.
    `report_usage` is a plain method, callable from either.
    """

    __slots__ = (
        "_emit",
        "_usage",
        "agent",
        "attempt",
        "idempotency_key",
        "loop",
        "provider",
        "run_id",
        "task_id",
        "timeout_s",
        "worker_id",
    )

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
        agent: AgentConfig | None = None,
        provider: ProviderSpec | None = None,
        timeout_s: float | None = None,
    ) -> None:
        self.run_id = run_id
        self.task_id = task_id
        self.attempt = attempt
        #: Stable for every delivery of this attempt; pass it to external systems.
        self.idempotency_key = idempotency_key
        self.worker_id = worker_id
        #: The worker's event loop, for sync handlers that report from their thread.
        self.loop = loop
        #: The agent this task runs as (handler `agent`), or None.
        self.agent = agent
        #: The operator's provider the agent names (endpoint, key variable), resolved by
        #: the worker; None when the task names no agent.
        self.provider = provider
        #: The attempt's wall-clock limit, if it has one.
        self.timeout_s = timeout_s
        self._emit = emit
        self._usage: Usage | None = None

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

    async def stream(
        self, text_delta: str, *, progress: float | None = None, message: str = ""
    ) -> None:
        """Reports text generated since the last call (streamed LLM tokens), so the
        dashboard shows the answer growing. The worker coalesces the deltas of an attempt
        (one message per ~100 ms), so calling this for every token is fine."""
        if not text_delta:
            return
        if progress is not None:
            progress = min(1.0, max(0.0, float(progress)))
        self._emit(
            Progress(
                run_id=self.run_id,
                task_id=self.task_id,
                attempt=self.attempt,
                worker_id=self.worker_id,
                at_ms=time.time_ns() // 1_000_000,
                progress=progress,
                message=str(message),
                text_delta=str(text_delta),
            )
        )

    def report_usage(
        self, *, input_tokens: int = 0, output_tokens: int = 0, cost_usd: float = 0.0
    ) -> None:
        """Adds tokens and cost to this attempt's usage, which its result carries whether
        the attempt succeeds or fails. Call it once per model call."""
        if input_tokens < 0 or output_tokens < 0 or cost_usd < 0:
            raise ValueError("usage must not be negative")
        usage = self._usage
        if usage is None:
            usage = self._usage = Usage()
        usage.input_tokens += int(input_tokens)
        usage.output_tokens += int(output_tokens)
        # Rounded to a picodollar so sums of prices print as the numbers they are.
        usage.cost_usd = round(usage.cost_usd + float(cost_usd), 12)

    async def publish_usage(self, message: str = "") -> None:
        """Sends the attempt's usage so far (what `report_usage` added up) as a progress
        message, so spending is counted before the result arrives, or if it never does
        (a provider that bills, then stalls past the timeout). The result's usage
        supersedes it. Nothing is sent before any usage is reported."""
        usage = self._usage
        if usage is None:
            return
        self._emit(
            Progress(
                run_id=self.run_id,
                task_id=self.task_id,
                attempt=self.attempt,
                worker_id=self.worker_id,
                at_ms=time.time_ns() // 1_000_000,
                message=str(message),
                usage=Usage(usage.input_tokens, usage.output_tokens, usage.cost_usd),
            )
        )

    @property
    def usage(self) -> Usage | None:
        """What `report_usage` added up so far; None if it was never called."""
        return self._usage

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
