"""Issue #13: an attempt's log is capped (lines, bytes, and the size of one line), and
what was dropped is said in one line when the attempt ends."""

from __future__ import annotations

from typing import Any

import jsonschema
from redis.asyncio import Redis
from support import Results, add_tasks, make_registry, running_worker, task_message, worker_config

from apex_worker.context import Context
from apex_worker.logcap import MAX_LINE_BYTES

LINE = "x" * 50_000  # 50 KB


async def chatty(input: Any, upstream: Any, ctx: Context) -> str:
    for i in range(input["lines"]):
        await ctx.log(f"{i:05d}{input.get('line', LINE)}")
    return "done"


async def test_a_flood_of_log_lines_is_capped_and_summed_up(
    r: Redis, prefix: str, validator: jsonschema.Draft202012Validator
) -> None:
    await add_tasks(r, prefix, task_message("flood", "chatty", {"lines": 2000}))
    results = Results(r, prefix)
    async with running_worker(worker_config(prefix), make_registry(chatty=chatty)):
        got = await results.wait_results(1)
    assert got["flood"]["outcome"] == "succeeded"
    *lines, summary = results.of_type("log")
    sent = sum(len(m["message"].encode()) for m in lines)
    assert len(lines) <= 1000
    assert sent <= 1024 * 1024
    # 50,005 bytes a line: 20 fit in 1 MiB. The log is the first lines, in order.
    assert [m["message"][:5] for m in lines] == [f"{i:05d}" for i in range(20)]
    assert summary["level"] == "warning"
    assert summary["message"] == (
        f"1980 more log lines ({1980 * 50_005} bytes) dropped: per-attempt log cap"
    )
    assert results.messages.index(summary) < results.messages.index(got["flood"])
    validator.validate(summary)


async def test_the_line_cap_and_the_length_of_a_line(r: Redis, prefix: str) -> None:
    await add_tasks(
        r,
        prefix,
        task_message("many", "chatty", {"lines": 12, "line": "short"}),
        task_message("long", "chatty", {"lines": 1, "line": "é" * 100_000}),
        task_message("quiet", "chatty", {"lines": 3, "line": "ok"}),
    )
    results = Results(r, prefix)
    config = worker_config(prefix, max_log_lines_per_attempt=5)
    async with running_worker(config, make_registry(chatty=chatty)):
        await results.wait_results(3)
    logs: dict[str, list[str]] = {}
    for m in results.of_type("log"):
        logs.setdefault(m["task_id"], []).append(m["message"])
    assert logs["many"][:5] == [f"{i:05d}short" for i in range(5)]
    assert logs["many"][5:] == ["7 more log lines (70 bytes) dropped: per-attempt log cap"]
    [long] = logs["long"]
    assert len(long.encode()) <= MAX_LINE_BYTES
    assert long.endswith("…[truncated]")
    assert logs["quiet"] == ["00000ok", "00001ok", "00002ok"]  # under the cap: no summary
