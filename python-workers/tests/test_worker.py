"""A worker in the test's event loop against the real Redis: what it reads, runs, reports
and leaves pending."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import jsonschema
from redis.asyncio import Redis
from support import Results, add_tasks, make_registry, running_worker, task_message, worker_config

from apex_worker import NoRetry, Retry, Worker


async def test_results_arrive_for_the_tasks_added(
    r: Redis, prefix: str, validator: jsonschema.Draft202012Validator
) -> None:
    ids = await add_tasks(
        r,
        prefix,
        task_message("a", "echo", {"topic": "tides"}),
        task_message("b", "sum", {"value": 1, "modulus": 1000}, upstream={"a": 2, "x": 3}),
        task_message("c", "noop"),
    )
    results = Results(r, prefix)
    async with running_worker(worker_config(prefix)) as worker:
        got = await results.wait_results(3)
    assert got["a"]["output"] == {"topic": "tides"}
    assert got["b"]["output"] == 7
    assert got["c"]["output"] is None
    assert {m["outcome"] for m in got.values()} == {"succeeded"}
    assert [got[t]["msg_id"] for t in "abc"] == ids
    assert {(m["worker_id"], m["queue"]) for m in got.values()} == {(worker.id, "default")}
    for m in got.values():
        assert m["started_at_ms"] <= m["finished_at_ms"]
    # The orchestrator acknowledges after storing the result; the worker never does.
    pending = await r.xpending(f"{prefix}:queue:default", "workers")
    assert pending["pending"] == 3
    kinds = [m["type"] for m in results.messages]
    assert kinds[0] == "heartbeat"
    for message in results.messages:
        validator.validate(message)


async def test_concurrency_bound_is_respected(r: Redis, prefix: str) -> None:
    spans: list[tuple[float, float]] = []

    async def timed(input: Any, upstream: Any, ctx: Any) -> None:
        start = time.monotonic()
        await asyncio.sleep(0.05)
        spans.append((start, time.monotonic()))

    await add_tasks(r, prefix, *(task_message(f"t{i}", "timed") for i in range(10)))
    results = Results(r, prefix)
    async with running_worker(worker_config(prefix, concurrency=3), make_registry(timed=timed)):
        await results.wait_results(10)
    assert len(spans) == 10
    assert max_overlap(spans) == 3


async def test_concurrency_bound_holds_across_several_queues(r: Redis, prefix: str) -> None:
    spans: list[tuple[float, float]] = []

    async def timed(input: Any, upstream: Any, ctx: Any) -> None:
        start = time.monotonic()
        await asyncio.sleep(0.05)
        spans.append((start, time.monotonic()))

    for queue in ("a", "b", "c"):
        tasks = (task_message(f"{queue}{i}", "timed", queue=queue) for i in range(4))
        await add_tasks(r, prefix, *tasks, queue=queue)
    results = Results(r, prefix)
    config = worker_config(prefix, concurrency=2, queues=["a", "b", "c"])
    async with running_worker(config, make_registry(timed=timed)):
        got = await results.wait_results(12)
    assert {m["queue"] for m in got.values()} == {"a", "b", "c"}
    assert max_overlap(spans) <= 2


def max_overlap(spans: list[tuple[float, float]]) -> int:
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


async def test_failures_say_what_happened_and_what_to_do(r: Redis, prefix: str) -> None:
    async def later(input: Any, upstream: Any, ctx: Any) -> None:
        raise Retry("rate limited", after_s=5)

    async def never(input: Any, upstream: Any, ctx: Any) -> None:
        raise NoRetry("bad request")

    async def unencodable(input: Any, upstream: Any, ctx: Any) -> Any:
        return {"when": object()}

    await add_tasks(
        r,
        prefix,
        task_message("boom", "fail", {"message": "provider said no"}),
        task_message("slow", "sleep", {"seconds": 30}, timeout_s=0.2),
        task_message("ghost", "no_such_handler"),
        task_message("later", "later"),
        task_message("never", "never"),
        task_message("weird", "unencodable"),
        task_message("flaky", "fail", {"until_attempt": 2}, attempt=2),
    )
    results = Results(r, prefix)
    registry = make_registry(later=later, never=never, unencodable=unencodable)
    async with running_worker(worker_config(prefix), registry):
        got = await results.wait_results(7)
    errors = {t: m["error"] for t, m in got.items() if m["outcome"] == "failed"}
    assert set(errors) == {"boom", "slow", "ghost", "later", "never", "weird"}
    assert errors["boom"]["kind"] == "exception"
    assert errors["boom"]["error_type"] == "HandlerFailed"
    assert errors["boom"]["message"] == "provider said no"
    assert "Traceback (most recent call last)" in errors["boom"]["traceback"]
    assert errors["boom"]["retryable"] is True
    assert errors["slow"]["kind"] == "timeout"
    assert errors["ghost"] == {
        "kind": "unknown_handler",
        "message": "no handler named 'no_such_handler' is registered on this worker",
        "retryable": False,
    }
    assert (errors["later"]["retryable"], errors["later"]["retry_after_s"]) == (True, 5)
    assert errors["never"]["retryable"] is False
    assert errors["weird"]["kind"] == "invalid_output"
    assert got["flaky"]["output"] == {"until_attempt": 2}
    assert all(m["output"] is None for t, m in got.items() if t in errors)


async def test_cancel_interrupts_a_running_attempt(r: Redis, prefix: str) -> None:
    await add_tasks(r, prefix, task_message("long", "sleep", {"seconds": 60}, run_id="r_c"))
    results = Results(r, prefix)
    async with running_worker(worker_config(prefix)) as worker:
        await results.until(lambda s: bool(s.of_type("started")))
        # Another attempt's cancel is not ours to act on.
        for attempt in (2, 1):
            cancel = {"v": 1, "type": "cancel", "run_id": "r_c", "task_id": "long"}
            await r.xadd(f"{prefix}:control", {"m": json.dumps(cancel | {"attempt": attempt})})
        got = await results.wait_results(1)
        assert worker.in_flight == 0
    result = got["long"]
    assert result["outcome"] == "failed"
    assert result["error"]["kind"] == "cancelled"
    assert result["error"]["retryable"] is False
    assert result["finished_at_ms"] - result["started_at_ms"] < 30_000


async def test_drain_finishes_in_flight_work_then_stops(r: Redis, prefix: str) -> None:
    await add_tasks(
        r, prefix, *(task_message(f"t{i}", "sleep", {"seconds": 0.3}) for i in range(3))
    )
    results = Results(r, prefix)
    config = worker_config(prefix, shutdown_grace_s=0.0)
    async with running_worker(config) as worker:
        await results.until(lambda s: len(s.of_type("started")) == 3)
        other = {"v": 1, "type": "drain", "worker_id": "someone-else"}
        await r.xadd(f"{prefix}:control", {"m": json.dumps(other)})
        await r.xadd(
            f"{prefix}:control",
            {"m": json.dumps({"v": 1, "type": "drain", "worker_id": worker.id})},
        )
        await results.until(lambda s: bool(s.of_type("worker_stopped")))
    # The drain waited for the attempts however short the SIGTERM grace is.
    assert {m["outcome"] for m in results.results().values()} == {"succeeded"}
    assert len(results.results()) == 3
    assert not results.of_type("released")
    assert results.of_type("heartbeat")[-1]["worker"]["state"] == "draining"
    assert results.messages[-1]["type"] == "worker_stopped"


async def test_stop_releases_what_outlives_the_grace(r: Redis, prefix: str) -> None:
    await add_tasks(
        r,
        prefix,
        task_message("quick", "sleep", {"seconds": 0.1}),
        task_message("endless", "sleep", {"seconds": 60}),
    )
    results = Results(r, prefix)
    async with running_worker(worker_config(prefix)) as worker:
        await results.until(lambda s: len(s.of_type("started")) == 2)
        worker.stop(grace_s=0.5)
        await results.until(lambda s: bool(s.of_type("worker_stopped")))
    assert results.results()["quick"]["outcome"] == "succeeded"
    [released] = results.of_type("released")
    assert (released["task_id"], released["reason"]) == ("endless", "worker shutting down")
    assert "endless" not in results.results()
    assert results.messages[-1]["type"] == "worker_stopped"


async def test_malformed_messages_go_to_the_dead_letter_stream(r: Redis, prefix: str) -> None:
    queue = f"{prefix}:queue:default"
    await r.xgroup_create(queue, "workers", id="0", mkstream=True)
    bad_ids = [
        (await r.xadd(queue, {"m": "not json {"})).decode(),
        (await r.xadd(queue, {"m": json.dumps(task_message("v2", "noop") | {"v": 2})})).decode(),
        (await r.xadd(queue, {"other": "field"})).decode(),
    ]
    await add_tasks(r, prefix, task_message("fine", "echo", 1))
    results = Results(r, prefix)
    async with running_worker(worker_config(prefix)):
        got = await results.wait_results(1)
        await wait_until(lambda: r.xlen(f"{prefix}:dead"), 3)
        # Acknowledged, so never delivered again; the good task stays for the orchestrator.
        await wait_until(lambda: pending_count(r, queue), 1)
    assert got["fine"]["output"] == 1
    dead = [json.loads(f[b"m"]) for _, f in await r.xrange(f"{prefix}:dead")]
    assert [d["msg_id"] for d in dead] == bad_ids
    assert dead[0]["reason"].startswith("not JSON")
    assert dead[0]["raw"] == "not json {"
    assert dead[1]["reason"] == "unsupported protocol version 2"
    assert dead[2]["reason"] == "entry has no `m` field"
    assert all(isinstance(d["at_ms"], int) for d in dead)


async def pending_count(r: Redis, queue: str) -> int:
    return int((await r.xpending(queue, "workers"))["pending"])


async def wait_until(probe: Any, expected: int) -> None:
    deadline = time.monotonic() + 20
    while (value := await probe()) != expected:
        assert time.monotonic() < deadline, f"still {value}, expected {expected}"
        await asyncio.sleep(0.05)


async def test_lease_renewal_keeps_an_entry_fresh(r: Redis, prefix: str) -> None:
    queue = f"{prefix}:queue:default"
    await add_tasks(r, prefix, task_message("long", "sleep", {"seconds": 60}))
    results = Results(r, prefix)
    async with running_worker(worker_config(prefix, lease_interval_s=0.1)):
        await results.until(lambda s: bool(s.of_type("started")))
        await asyncio.sleep(1.5)
        [entry] = await r.xpending_range(queue, "workers", min="-", max="+", count=10)
    # Without renewal it would have been idle for 1.5 s by now.
    assert entry["time_since_delivered"] < 1000
    assert entry["times_delivered"] == 1


async def test_a_finished_entry_keeps_its_lease_until_the_orchestrator_acks_it(
    r: Redis, prefix: str
) -> None:
    # An orchestrator slow to read results must not take a finished attempt for a lost
    # one: the entry stays fresh until acknowledged, and is then forgotten.
    queue = f"{prefix}:queue:default"
    await add_tasks(r, prefix, task_message("quick", "noop"))
    results = Results(r, prefix)
    async with running_worker(worker_config(prefix, lease_interval_s=0.1)) as worker:
        await results.wait_results(1)
        await asyncio.sleep(1.5)
        [entry] = await r.xpending_range(queue, "workers", min="-", max="+", count=10)
        assert entry["time_since_delivered"] < 1000
        await r.xack(queue, "workers", entry["message_id"])
        await r.xdel(queue, entry["message_id"])
        await wait_until(lambda: _unacked_count(worker), 0)


async def _unacked_count(worker: Any) -> int:
    return len(worker._unacked)


async def test_progress_and_logs_are_forwarded(
    r: Redis, prefix: str, validator: jsonschema.Draft202012Validator
) -> None:
    async def chatty(input: Any, upstream: Any, ctx: Any) -> str:
        await ctx.progress(0.5, "halfway")
        await ctx.log("fetched 3 sources")
        return ctx.idempotency_key

    await add_tasks(r, prefix, task_message("a", "chatty", run_id="r_p"))
    results = Results(r, prefix)
    async with running_worker(worker_config(prefix), make_registry(chatty=chatty)):
        got = await results.wait_results(1)
    assert got["a"]["output"] == "r_p:a:1"
    [progress] = results.of_type("progress")
    [line] = results.of_type("log")
    assert (progress["progress"], progress["message"]) == (0.5, "halfway")
    assert (line["level"], line["message"]) == ("info", "fetched 3 sources")
    for message in (progress, line):
        validator.validate(message)


async def test_a_started_is_sent_while_the_attempt_runs(r: Redis, prefix: str) -> None:
    ids = await add_tasks(r, prefix, task_message("slow", "sleep", {"seconds": 0.5}))
    results = Results(r, prefix)
    async with running_worker(worker_config(prefix)):
        await results.wait_results(1)
    kinds = [m["type"] for m in results.messages if m["type"] in ("started", "result")]
    assert kinds == ["started", "result"]
    assert results.of_type("started")[0]["msg_id"] == ids[0]


async def test_burst_mode_stops_when_the_queue_is_empty(r: Redis, prefix: str) -> None:
    await add_tasks(r, prefix, *(task_message(f"t{i}", "noop") for i in range(50)))
    results = Results(r, prefix)
    worker = Worker(worker_config(prefix, burst=True, concurrency=7), make_registry())
    await asyncio.wait_for(worker.run(), 20)
    await results.until(lambda s: bool(s.of_type("worker_stopped")))
    assert len(results.results()) == 50
    heartbeat = results.of_type("heartbeat")[0]["worker"]
    assert heartbeat["concurrency"] == 7
    assert {"noop", "echo", "sleep", "fail", "sum"} <= set(heartbeat["handlers"])


async def test_a_handler_that_ignores_cancellation_is_released_anyway(
    r: Redis, prefix: str, monkeypatch: Any
) -> None:
    monkeypatch.setattr("apex_worker.worker._RELEASE_TIMEOUT_S", 0.1)

    async def stubborn(input: Any, upstream: Any, ctx: Any) -> str:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            await asyncio.sleep(0.5)
        return "too late"

    await add_tasks(r, prefix, task_message("stubborn", "stubborn"))
    results = Results(r, prefix)
    async with running_worker(worker_config(prefix), make_registry(stubborn=stubborn)) as worker:
        await results.until(lambda s: bool(s.of_type("started")))
        worker.stop(grace_s=0)
        await results.until(lambda s: bool(s.of_type("worker_stopped")))
    assert worker.abandoned == 1
    assert [m["task_id"] for m in results.of_type("released")] == ["stubborn"]
    await asyncio.sleep(0.6)  # the handler ends; nothing more is sent or counted twice
    await results.poll()
    assert results.messages[-1]["type"] == "worker_stopped"
