"""Runs one handler call and turns whatever happens into an outcome: the output, or a
`TaskError` saying what failed and whether retrying can help. No Redis here."""

from __future__ import annotations

import asyncio
import inspect
import threading
import traceback
from typing import Any

from apex_worker.context import Context
from apex_worker.errors import NoRetry, Retry
from apex_worker.protocol import TaskError, TaskMessage
from apex_worker.registry import Handler

#: Longest traceback kept; the end of a traceback is where the error is.
MAX_TRACEBACK_CHARS = 16_000

# Sync handlers running in threads now. A cancelled or timed-out attempt stops waiting
# for its thread, but the thread runs on; at exit the CLI must not wait for it.
_threads_running = 0
_threads_lock = threading.Lock()


def threads_running() -> int:
    return _threads_running


async def execute(
    handler: Handler | None, task: TaskMessage, ctx: Context
) -> tuple[Any, TaskError | None]:
    """Returns `(output, None)` on success, `(None, error)` on failure. Cancellation from
    outside (a `cancel` message, shutdown) propagates as `CancelledError`."""
    if handler is None:
        return None, TaskError(
            kind="unknown_handler",
            message=f"no handler named {task.handler!r} is registered on this worker",
            retryable=False,
        )
    timeout_s = task.timeout_s
    try:
        if timeout_s is None:
            return await _call(handler, task, ctx), None
        deadline = asyncio.timeout(timeout_s)
        try:
            async with deadline:
                return await _call(handler, task, ctx), None
        except TimeoutError:
            if not deadline.expired():
                raise  # the handler's own TimeoutError: an ordinary exception
            return None, TaskError(
                kind="timeout",
                message=f"attempt exceeded timeout_s={timeout_s:g}",
                retryable=True,
            )
    except Exception as exc:  # a handler may raise anything; all of it is reported
        return None, error_from_exception(exc)


async def _call(handler: Handler, task: TaskMessage, ctx: Context) -> Any:
    if handler.is_async:
        return await handler.fn(task.input, task.upstream, ctx)
    # A plain function may block; a thread keeps the loop (and every other attempt) going.
    result = await asyncio.to_thread(_in_thread, handler, task, ctx)
    if inspect.isawaitable(result):
        result = await result
    return result


def _in_thread(handler: Handler, task: TaskMessage, ctx: Context) -> Any:
    global _threads_running
    with _threads_lock:
        _threads_running += 1
    try:
        return handler.fn(task.input, task.upstream, ctx)
    finally:
        with _threads_lock:
            _threads_running -= 1


def error_from_exception(exc: BaseException) -> TaskError:
    text = "".join(traceback.format_exception(exc))
    if len(text) > MAX_TRACEBACK_CHARS:
        text = "…\n" + text[-MAX_TRACEBACK_CHARS:]
    retryable = not isinstance(exc, NoRetry)
    retry_after_s = exc.after_s if isinstance(exc, Retry) else None
    return TaskError(
        kind="exception",
        error_type=type(exc).__name__,
        message=str(exc) or type(exc).__name__,
        traceback=text,
        retryable=retryable,
        retry_after_s=retry_after_s,
    )
