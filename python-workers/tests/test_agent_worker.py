"""Agents through a worker and the real Redis: the result's usage and children, streamed
text as coalesced progress, provider failures as retry decisions, and any handler's
`Spawn` and `ctx.report_usage`."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from redis.asyncio import Redis
from support import REPO, Results, add_tasks, make_registry, running_worker, task_message
from support import worker_config as base_config

from apex_worker import Spawn, WorkerConfig
from apex_worker.agents.transport import http_clients
from apex_worker.context import Context
from apex_worker.testing.fake_providers import FakeProviders
from apex_worker.testing.providers_file import fake_providers, write_providers_file

KEY = "sk-test-not-a-real-key"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeProviders]:
    monkeypatch.setenv("APEX_TEST_KEY", KEY)
    monkeypatch.delenv("APEX_PRICES", raising=False)
    with FakeProviders() as server:
        yield server


@pytest.fixture
def providers_file(fake: FakeProviders, tmp_path: Path) -> Path:
    """The operator's declaration of the fake server: `openai` and `anthropic` on it
    (allow_private, key from APEX_TEST_KEY), and `keyless`, whose key variable is empty."""
    declared = fake_providers(fake.port, api_key_env="APEX_TEST_KEY")
    declared["keyless"] = declared["openai"] | {"api_key_env": "APEX_EMPTY_KEY"}
    return write_providers_file(tmp_path / "providers.json", declared)


def worker_config(
    prefix: str, providers_file: Path | None = None, **overrides: Any
) -> WorkerConfig:
    if providers_file is not None:
        overrides["providers_file"] = str(providers_file)
    return base_config(prefix, **overrides)


def openai_agent(**extra: Any) -> dict[str, Any]:
    return {"name": "researcher", "provider": "openai", "model": "gpt-4o-mini"} | extra


def agent_task(task_id: str, agent: dict[str, Any], input: Any, **extra: Any) -> dict[str, Any]:
    return task_message(task_id, "agent", input, agent=agent, **extra)


async def test_an_agent_streams_its_answer_and_reports_usage(
    r: Redis,
    prefix: str,
    fake: FakeProviders,
    providers_file: Path,
    validator: jsonschema.Draft202012Validator,
) -> None:
    fake.chunk_delay_s = 0.01  # ~50 chunks over ~0.5 s
    words = " ".join(f"w{i}" for i in range(45))
    await add_tasks(r, prefix, agent_task("a", openai_agent(), {"prompt": words}))
    results = Results(r, prefix)
    async with running_worker(worker_config(prefix, providers_file)):
        got = await results.wait_results(1)
    assert len(http_clients) == 0  # closed with the worker
    result = got["a"]
    assert result["outcome"] == "succeeded"
    output = result["output"]
    assert output["text"] == f"gpt-4o-mini heard: {words}"
    usage = output["usage"]
    assert result["usage"] == {k: usage[k] for k in ("input_tokens", "output_tokens", "cost_usd")}
    assert result["usage"]["input_tokens"] == len(words) // 4 + 1
    assert result["usage"]["cost_usd"] > 0
    assert "children" not in result
    # The answer grew on the results stream, in a few coalesced messages, all before
    # the result.
    deltas = [m for m in results.of_type("progress") if m.get("text_delta")]
    assert "".join(m["text_delta"] for m in deltas) == output["text"]
    assert 2 <= len(deltas) <= 10, len(deltas)
    gaps = [b["at_ms"] - a["at_ms"] for a, b in itertools.pairwise(deltas)]
    assert min(gaps[:-1]) >= 50, gaps  # the last one goes out early, with the result
    assert results.messages.index(deltas[-1]) < results.messages.index(result)
    for message in results.messages:
        validator.validate(message)


async def test_provider_failures_become_retry_decisions(
    r: Redis,
    prefix: str,
    fake: FakeProviders,
    providers_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake.fail_first_with_429 = 1
    monkeypatch.setenv("APEX_EMPTY_KEY", "")
    await add_tasks(r, prefix, agent_task("limited", openai_agent(), {"prompt": "x"}))
    results = Results(r, prefix)
    async with running_worker(worker_config(prefix, providers_file)):
        await results.wait_results(1)
        keyless = openai_agent(provider="keyless")
        bad = {"prompt": "x [fake:status=400]"}
        await add_tasks(
            r,
            prefix,
            agent_task("keyless", keyless, {"prompt": "x"}),
            agent_task("bad", openai_agent(), bad),
            agent_task("template", openai_agent(), {"prompt": "{{upstream.nope}}"}),
            task_message("no-agent", "agent", {"prompt": "x"}),
        )
        got = await results.wait_results(5)
    limited = got["limited"]
    assert limited["outcome"] == "failed"
    assert limited["error"]["retryable"] is True
    assert limited["error"]["retry_after_s"] == 1.0
    assert limited["error"]["error_type"] == "Retry"
    assert "usage" not in limited
    for task_id, words in [
        ("keyless", "set the environment variable APEX_EMPTY_KEY"),
        ("bad", 'openai provider "openai": HTTP 400 (fake_error)'),
        ("template", "`upstream` has no `nope`"),
        ("no-agent", "names none"),
    ]:
        error = got[task_id]["error"]
        assert error["retryable"] is False, task_id
        assert words in error["message"], error["message"]
    assert len(fake.requests) == 2  # the 429 and the 400; the rest failed before calling


async def test_a_planner_fans_out_into_child_tasks(
    r: Redis, prefix: str, validator: jsonschema.Draft202012Validator
) -> None:
    # The first task of examples/swarm.json, as the orchestrator would send it.
    swarm = json.loads((REPO / "examples" / "swarm.json").read_text())
    plan = swarm["tasks"][0]
    agent = {"name": plan["agent"]} | swarm["agents"][plan["agent"]]
    agent["model"] = "mock-fast"
    plan["input"]["fan_out"]["collect"] = {"id": "summary", "handler": "echo"}
    await add_tasks(r, prefix, agent_task("plan", agent, plan["input"]))
    results = Results(r, prefix)
    async with running_worker(worker_config(prefix)):
        got = await results.wait_results(1)
    result = got["plan"]
    validator.validate(result)
    text = result["output"]["text"]
    assert text.startswith("1. ")
    assert text.count("\n") == 2
    items = [line.split(". ", 1)[1] for line in text.splitlines()]
    assert result["children"] == [
        {
            "id": str(i),
            "handler": "agent",
            "agent": "researcher",
            "input": {"prompt": f"Research this step: {item}"},
        }
        for i, item in enumerate(items)
    ] + [{"id": "summary", "handler": "echo", "depends_on": ["0", "1", "2"]}]
    assert result["usage"]["input_tokens"] > 0


async def test_any_handler_can_spawn_children_and_report_usage(r: Redis, prefix: str) -> None:
    async def split(input: Any, upstream: Any, ctx: Context) -> Spawn:
        ctx.report_usage(input_tokens=7, output_tokens=3, cost_usd=0.25)
        children = [{"id": f"part{i}", "handler": "echo", "input": i} for i in range(2)]
        return Spawn({"parts": 2}, children=children)

    async def spend_then_fail(input: Any, upstream: Any, ctx: Context) -> None:
        ctx.report_usage(input_tokens=100, output_tokens=20, cost_usd=0.5)
        ctx.report_usage(output_tokens=5, cost_usd=0.25)
        if input == "timeout":
            await asyncio.sleep(30)
        raise RuntimeError("the model said something useless")

    async def bad_child(input: Any, upstream: Any, ctx: Context) -> Spawn:
        ctx.report_usage(input_tokens=1)
        return Spawn(None, children=[{"id": "x", "handler": "echo", "input": object()}])

    await add_tasks(
        r,
        prefix,
        task_message("split", "split"),
        task_message("failed", "spend_then_fail"),
        task_message("slow", "spend_then_fail", "timeout", timeout_s=0.2),
        task_message("bad", "bad_child"),
    )
    results = Results(r, prefix)
    registry = make_registry(split=split, spend_then_fail=spend_then_fail, bad_child=bad_child)
    async with running_worker(worker_config(prefix), registry):
        got = await results.wait_results(4)
    assert got["split"]["output"] == {"parts": 2}
    assert got["split"]["children"] == [
        {"id": "part0", "handler": "echo", "input": 0},
        {"id": "part1", "handler": "echo", "input": 1},
    ]
    assert got["split"]["usage"] == {"input_tokens": 7, "output_tokens": 3, "cost_usd": 0.25}
    spent = {"input_tokens": 100, "output_tokens": 25, "cost_usd": 0.75}
    assert (got["failed"]["outcome"], got["failed"]["usage"]) == ("failed", spent)
    assert got["slow"]["error"]["kind"] == "timeout"
    assert got["slow"]["usage"] == spent
    assert got["bad"]["error"]["kind"] == "invalid_output"
    assert "children" not in got["bad"]
    assert got["bad"]["usage"]["input_tokens"] == 1


async def test_a_cancelled_attempt_still_reports_what_it_spent(r: Redis, prefix: str) -> None:
    async def spend_then_wait(input: Any, upstream: Any, ctx: Context) -> None:
        ctx.report_usage(input_tokens=9)
        await ctx.stream("partial answer")
        await asyncio.sleep(60)

    await add_tasks(r, prefix, task_message("long", "spend_then_wait", run_id="r_c"))
    results = Results(r, prefix)
    config = worker_config(prefix, text_interval_s=5.0)  # the text is still held back
    async with running_worker(config, make_registry(spend_then_wait=spend_then_wait)):
        await results.until(lambda s: bool(s.of_type("started")))
        cancel = {"v": 1, "type": "cancel", "run_id": "r_c", "task_id": "long", "attempt": 1}
        await asyncio.sleep(0.1)
        await r.xadd(f"{prefix}:control", {"m": json.dumps(cancel)})
        got = await results.wait_results(1)
    assert got["long"]["error"]["kind"] == "cancelled"
    assert got["long"]["usage"] == {"input_tokens": 9, "output_tokens": 0, "cost_usd": 0.0}
    [delta] = [m for m in results.of_type("progress") if m.get("text_delta")]
    assert delta["text_delta"] == "partial answer"
    assert results.messages.index(delta) < results.messages.index(got["long"])


async def test_agent_calls_run_concurrently(
    r: Redis, prefix: str, fake: FakeProviders, providers_file: Path
) -> None:
    fake.delay_s = 0.3
    tasks = [agent_task(f"t{i}", openai_agent(), {"prompt": f"n{i}"}) for i in range(20)]
    await add_tasks(r, prefix, *tasks)
    results = Results(r, prefix)
    async with running_worker(worker_config(prefix, providers_file, concurrency=20)):
        got = await results.wait_results(20)
    assert {m["outcome"] for m in got.values()} == {"succeeded"}
    spans = [(q["started_at"], q["finished_at"]) for q in fake.requests]
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    assert peak >= 10, peak  # not one call after another


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
async def test_usage_goes_out_as_soon_as_the_provider_states_it(
    r: Redis,
    prefix: str,
    fake: FakeProviders,
    providers_file: Path,
    validator: jsonschema.Draft202012Validator,
    provider: str,
) -> None:
    # The provider bills (Anthropic's message_start, OpenAI's final usage chunk), then
    # hangs: the attempt times out, but its spending was reported while it hung.
    prompt = "tell me about tides [fake:stall]"
    task = agent_task("hung", openai_agent(provider=provider), {"prompt": prompt}, timeout_s=1.5)
    await add_tasks(r, prefix, task)
    results = Results(r, prefix)
    async with running_worker(worker_config(prefix, providers_file)):
        await results.until(lambda s: any(m.get("usage") for m in s.of_type("progress")))
        assert not results.of_type("result")  # known while the call still hangs
        got = await results.wait_results(1)
    result = got["hung"]
    assert result["error"]["kind"] == "timeout"
    billed = [m for m in results.of_type("progress") if m.get("usage")]
    assert billed[0]["usage"]["input_tokens"] == len(prompt) // 4 + 1  # the fake's count
    assert billed[0]["usage"]["cost_usd"] > 0  # priced like the result
    assert results.messages.index(billed[-1]) < results.messages.index(result)
    # The result's usage supersedes, and includes what the progress said.
    assert result["usage"] == billed[-1]["usage"]
    for message in results.messages:
        validator.validate(message)
