"""Built-in handlers, the registry, and how one handler call becomes an outcome."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest
from support import EXAMPLES, task_message

from apex_worker import NoRetry, Registry, Retry
from apex_worker.builtins import HandlerFailed, echo, fail, noop, sleep, sum_
from apex_worker.context import Context
from apex_worker.execute import execute
from apex_worker.protocol import LogLine, Progress, TaskMessage


def ctx(attempt: int = 1, sent: list[Any] | None = None) -> Context:
    return Context(
        run_id="r",
        task_id="t",
        attempt=attempt,
        idempotency_key=f"r:t:{attempt}",
        worker_id="w",
        emit=(sent if sent is not None else []).append,
    )


def task(handler: str, input: Any = None, **extra: Any) -> TaskMessage:
    return TaskMessage.from_dict(task_message("t", handler, input, **extra))


async def test_sum_adds_input_upstream_and_one_modulo_modulus() -> None:
    golden = json.loads((EXAMPLES / "task.json").read_text())
    assert await sum_(golden["input"], golden["upstream"], ctx()) == 1 + 2 + 3 + 1
    upstream = {"a": 5, "b": 1_000_000}
    # (1_000_002 + 1 + 5 + 1_000_000) % 1_000_003
    assert await sum_({"value": 1_000_002, "modulus": 1_000_003}, upstream, ctx()) == 2
    assert await sum_({"value": 2.5}, {"a": 1}, ctx()) == 4.5


async def test_sum_ignores_what_is_not_a_number() -> None:
    assert await sum_(None, {}, ctx()) == 1
    assert await sum_({}, {"a": "7", "b": None, "c": True, "d": {"x": 1}, "e": 3}, ctx()) == 4


async def test_sum_rejects_a_bad_input_for_good() -> None:
    with pytest.raises(NoRetry):
        await sum_({"value": "1"}, {}, ctx())
    with pytest.raises(NoRetry):
        await sum_({"modulus": 0}, {}, ctx())


async def test_fail_raises_its_message() -> None:
    with pytest.raises(HandlerFailed, match="provider said no"):
        await fail({"message": "provider said no"}, {}, ctx())
    with pytest.raises(HandlerFailed):
        await fail(None, {}, ctx())


async def test_fail_until_attempt_fails_only_earlier_attempts() -> None:
    input = {"message": "flaky", "until_attempt": 3}
    for attempt in (1, 2):
        with pytest.raises(HandlerFailed, match="flaky"):
            await fail(input, {}, ctx(attempt))
    assert await fail(input, {}, ctx(3)) == input
    assert await fail(input, {}, ctx(4)) == input


async def test_echo_noop_and_sleep() -> None:
    value = {"topic": "tides", "n": [1, 2]}
    assert await echo(value, {}, ctx()) == value
    assert await noop(value, {}, ctx()) is None
    assert await sleep({"seconds": 0.01}, {}, ctx()) == {"seconds": 0.01}
    assert await sleep(None, {}, ctx()) is None
    with pytest.raises(NoRetry):
        await sleep({"seconds": "soon"}, {}, ctx())


def test_handler_decorator_with_and_without_a_name() -> None:
    registry = Registry()

    @registry.handler
    async def plain(input: Any, upstream: Any, ctx: Any) -> None: ...

    @registry.handler("web.search")
    def search(input: Any, upstream: Any, ctx: Any) -> None: ...

    assert registry.names() == ["plain", "web.search"]
    assert registry.get("plain").is_async  # type: ignore[union-attr]
    assert not registry.get("web.search").is_async  # type: ignore[union-attr]


def test_registry_rejects_clashes_and_wrong_signatures() -> None:
    registry = Registry()
    registry.register("noop", noop)
    registry.register("noop", noop)  # the same function again: a module imported twice
    with pytest.raises(ValueError, match="already registered"):
        registry.register("noop", echo)
    with pytest.raises(TypeError, match="three arguments"):
        registry.register("bad", lambda input: input)


def registry_with(**handlers: Any) -> Registry:
    registry = Registry()
    for name, fn in handlers.items():
        registry.register(name, fn)
    return registry


async def run(fn: Any, input: Any = None, **extra: Any) -> tuple[Any, Any]:
    registry = registry_with(h=fn)
    return await execute(registry.get("h"), task("h", input, **extra), ctx())


async def test_an_exception_is_reported_with_its_traceback() -> None:
    async def broken(input: Any, upstream: Any, ctx: Any) -> None:
        raise ValueError("bad things")

    output, error = await run(broken)
    assert output is None
    assert (error.kind, error.error_type, error.message, error.retryable) == (
        "exception",
        "ValueError",
        "bad things",
        True,
    )
    assert "Traceback" in error.traceback
    assert "in broken" in error.traceback


async def test_retry_and_no_retry_carry_their_decision() -> None:
    async def later(input: Any, upstream: Any, ctx: Any) -> None:
        raise Retry("rate limited", after_s=5)

    async def never(input: Any, upstream: Any, ctx: Any) -> None:
        raise NoRetry("bad request")

    _, error = await run(later)
    assert (error.retryable, error.retry_after_s, error.message) == (True, 5, "rate limited")
    _, error = await run(never)
    assert (error.retryable, error.retry_after_s, error.message) == (False, None, "bad request")


async def test_timeout_fails_the_attempt_as_a_timeout() -> None:
    _, error = await run(sleep, {"seconds": 30}, timeout_s=0.05)
    assert (error.kind, error.retryable) == ("timeout", True)
    assert "timeout_s=0.05" in error.message


async def test_a_handlers_own_timeout_error_is_an_exception() -> None:
    async def upstream_timed_out(input: Any, upstream: Any, ctx: Any) -> None:
        raise TimeoutError("the provider timed out")

    _, error = await run(upstream_timed_out, timeout_s=30)
    assert (error.kind, error.error_type) == ("exception", "TimeoutError")


async def test_unknown_handler_is_not_retryable() -> None:
    output, error = await execute(None, task("nope"), ctx())
    assert output is None
    assert (error.kind, error.retryable) == ("unknown_handler", False)
    assert "'nope'" in error.message


async def test_sync_handler_runs_in_a_thread() -> None:
    def blocking(input: Any, upstream: Any, ctx: Any) -> Any:
        return {"thread": threading.get_ident(), "input": input}

    output, error = await run(blocking, 7)
    assert error is None
    assert output["input"] == 7
    assert output["thread"] != threading.get_ident()


async def test_progress_and_log_reach_the_worker() -> None:
    sent: list[Any] = []
    context = ctx(sent=sent)
    await context.progress(1.5, "done-ish")
    await context.log("hello", level="warning")
    progress, line = sent
    assert isinstance(progress, Progress)
    assert (progress.progress, progress.message) == (1.0, "done-ish")
    assert isinstance(line, LogLine)
    assert (line.level, line.message, line.run_id) == ("warning", "hello", "r")
    with pytest.raises(ValueError, match="level"):
        await context.log("x", level="loud")  # type: ignore[arg-type]


async def test_a_sync_handler_reports_through_the_loop() -> None:
    sent: list[Any] = []
    context = ctx(sent=sent)
    context.loop = asyncio.get_running_loop()

    def reporting(input: Any, upstream: Any, ctx: Context) -> str:
        assert ctx.loop is not None
        asyncio.run_coroutine_threadsafe(ctx.log("from a thread"), ctx.loop).result()
        return "ok"

    output, error = await execute(registry_with(h=reporting).get("h"), task("h"), context)
    assert (output, error) == ("ok", None)
    assert [m.message for m in sent] == ["from a thread"]
