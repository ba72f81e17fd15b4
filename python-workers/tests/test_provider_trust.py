"""Issue #12: a task cannot choose where a worker sends requests or which secrets go with
them. Forged task messages on the real Redis, real worker processes and in-process
workers, a loopback capture server that must receive nothing, and canary secrets in the
worker's environment that must never leave it."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from support import (
    DEADLINE_S,
    REDIS_URL,
    CaptureServer,
    Results,
    add_tasks,
    running_worker,
    task_message,
    worker_config,
)

from apex_worker.agents import destination
from apex_worker.agents.destination import address_class
from apex_worker.testing.fake_providers import FakeProviders
from apex_worker.testing.providers_file import fake_providers, write_providers_file

EXE = Path(sys.executable).parent / "apex-worker"
CANARIES = {
    "APEX_CANARY_SECRET": "canary-secret-7f3a9c",
    "OPENAI_API_KEY": "sk-canary-openai-51d2",
    "ANTHROPIC_API_KEY": "sk-ant-canary-88e0",
    "DATABASE_URL": "postgres://apex:canary-db-password@db/apex",
}


@pytest.fixture
def fake() -> Iterator[FakeProviders]:
    with FakeProviders() as server:
        yield server


@pytest.fixture
def capture() -> Iterator[CaptureServer]:
    with CaptureServer() as server:
        yield server


def agent(**fields: Any) -> dict[str, Any]:
    return {"name": "researcher", "model": "gpt-4o-mini"} | fields


def agent_task(task_id: str, agent: dict[str, Any], prompt: str = "hello", **extra: Any) -> Any:
    return task_message(task_id, "agent", {"prompt": prompt}, agent=agent, **extra)


def assert_no_canary(text: str | bytes) -> None:
    data = text.encode() if isinstance(text, str) else text
    for value in CANARIES.values():
        assert value.encode() not in data, f"{value} leaked"


async def test_forged_agents_are_refused_and_nothing_leaves_the_worker(
    r: Redis, prefix: str, fake: FakeProviders, capture: CaptureServer, tmp_path: Path
) -> None:
    # The operator declares one provider: the fake server, keyed by APEX_TEST_KEY.
    providers = write_providers_file(
        tmp_path / "providers.json", fake_providers(fake.port, api_key_env="APEX_TEST_KEY")
    )
    elsewhere = f"http://127.0.0.1:{capture.port}/v1"
    forged = {
        # The report's exploit: any variable, to any address.
        "exploit": agent(provider="openai", base_url=f"{elsewhere}?x=", api_key_env="DATABASE_URL"),
        # Without api_key_env the old worker sent OPENAI_API_KEY to any base_url.
        "base-url": agent(provider="openai", base_url=elsewhere),
        "key-env": agent(provider="anthropic", api_key_env="APEX_CANARY_SECRET"),
        "spelled-otherwise": agent(provider="openai", apiKey="x", extra_headers={"a": "b"}),
        "null-base-url": agent(provider="openai", base_url=None),
        "unknown": agent(provider="evil"),
    }
    tasks = [agent_task(task_id, a) for task_id, a in forged.items()]
    tasks.append(agent_task("declared", agent(provider="openai")))
    await add_tasks(r, prefix, *tasks)
    env = {k: v for k, v in os.environ.items() if not k.startswith("APEX_")}
    env |= CANARIES | {"APEX_TEST_KEY": "sk-test-operator-key"}
    proc = await asyncio.create_subprocess_exec(
        *(str(EXE), "--burst", "--providers-file", str(providers)),
        *("--redis-url", REDIS_URL, "--redis-prefix", prefix),
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), DEADLINE_S)
    assert proc.returncode == 0, stderr.decode()
    results = Results(r, prefix)
    got = await results.wait_results(len(tasks))

    assert got["declared"]["outcome"] == "succeeded"  # the operator's provider works
    expected = {
        "exploit": 'agent "researcher": api_key_env, base_url are set by the worker\'s '
        "operator, not by a task",
        "base-url": 'agent "researcher": base_url is set by the worker\'s operator, not by a task',
        "key-env": 'agent "researcher": api_key_env is set by the worker\'s operator, '
        "not by a task",
        "spelled-otherwise": 'agent "researcher": apiKey, extra_headers are set by the '
        "worker's operator, not by a task",
        "null-base-url": 'agent "researcher": base_url is set by the worker\'s operator, '
        "not by a task",
        "unknown": 'agent "researcher" names provider "evil", which this worker\'s operator '
        "has not declared (declared: anthropic, mock, openai)",
    }
    for task_id, message in expected.items():
        result = got[task_id]
        assert result["outcome"] == "failed", task_id
        assert result["error"]["retryable"] is False, task_id
        assert result["error"]["message"] == message
        assert "usage" not in result
    # Nothing reached the other address; the one declared call carried the operator's
    # key and no canary; no canary is anywhere on the results stream.
    assert (capture.connections, capture.received) == (0, b"")
    [call] = fake.requests
    assert call["all_headers"]["authorization"] == "Bearer sk-test-operator-key"
    assert_no_canary(json.dumps(fake.requests))
    assert_no_canary(json.dumps(results.messages))
    assert "refused" in stderr.decode()  # the operator's log says what happened


async def test_without_a_providers_file_only_the_builtins_exist(
    r: Redis, prefix: str, capture: CaptureServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in CANARIES.items():
        monkeypatch.setenv(name, value)
    await add_tasks(
        r,
        prefix,
        agent_task("local", agent(provider="ollama")),
        agent_task("base", agent(provider="openai", base_url=f"http://127.0.0.1:{capture.port}")),
    )
    results = Results(r, prefix)
    async with running_worker(worker_config(prefix)):
        got = await results.wait_results(2)
    assert "(declared: anthropic, mock, openai)" in got["local"]["error"]["message"]
    assert "base_url is set by the worker's operator" in got["base"]["error"]["message"]
    assert (capture.connections, capture.received) == (0, b"")


# -- private destinations ----------------------------------------------------------------


async def test_a_loopback_provider_needs_allow_private(
    r: Redis, prefix: str, fake: FakeProviders, tmp_path: Path
) -> None:
    declared = fake_providers(fake.port, allow_private=False)
    declared |= fake_providers(fake.port, openai_name="allowed", anthropic_name="allowed-anthropic")
    providers = write_providers_file(tmp_path / "providers.json", declared)
    await add_tasks(
        r,
        prefix,
        agent_task("openai", agent(provider="openai")),
        agent_task("anthropic", agent(provider="anthropic")),
        agent_task("allowed", agent(provider="allowed")),
    )
    results = Results(r, prefix)
    async with running_worker(worker_config(prefix, providers_file=str(providers))):
        got = await results.wait_results(3)
    for task_id in ("openai", "anthropic"):
        error = got[task_id]["error"]
        assert error["retryable"] is False
        assert error["message"] == (
            f'{task_id} provider "{task_id}": 127.0.0.1 is a loopback address, and the '
            "worker's operator has not allowed private destinations for this provider "
            "(allow_private)"
        )
    assert got["allowed"]["outcome"] == "succeeded"
    assert len(fake.requests) == 1  # only the allowed call


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd12:3456::1", "private"),
        ("100.64.0.1", "CGNAT (shared, 100.64.0.0/10)"),
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("fe80::1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "private"),  # reserved: Python's is_private counts it
        ("198.18.0.1", "private"),  # benchmarking
        ("2002:0a00:0001::1", "private"),  # 6to4 around 10.0.0.1
        ("::7f00:1", "reserved (not globally routable)"),  # IPv4-compatible, deprecated
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_address_classes(address: str, kind: str | None) -> None:
    assert address_class(ipaddress.ip_address(address)) == kind


async def test_a_name_is_checked_by_what_it_resolves_to_at_connect_time_too(
    r: Redis, prefix: str, fake: FakeProviders, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A DNS answer that changes between the check before the request and the connection
    # (rebinding) must not reach a private address: the connection goes to addresses
    # checked at connect time, never to a fresh lookup.
    answers: dict[str, list[str]] = {
        "public.provider.test": ["93.184.216.34", "127.0.0.1"],
        "private.provider.test": ["127.0.0.1"],
    }
    asked: list[str] = []

    async def resolve(host: str, port: int) -> list[Any]:
        asked.append(host)
        queue = answers[host]
        return [ipaddress.ip_address(queue.pop(0) if len(queue) > 1 else queue[0])]

    monkeypatch.setattr(destination.resolver, "resolve", resolve)
    providers = write_providers_file(
        tmp_path / "providers.json",
        {
            "rebinding": {
                "kind": "openai",
                "base_url": f"http://public.provider.test:{fake.port}/v1",
            },
            "local": {
                "kind": "openai",
                "base_url": f"http://private.provider.test:{fake.port}/v1",
                "allow_private": True,
            },
        },
    )
    await add_tasks(r, prefix, agent_task("rebinding", agent(provider="rebinding")))
    results = Results(r, prefix)
    async with running_worker(worker_config(prefix, providers_file=str(providers))):
        got = await results.wait_results(1)
        await add_tasks(r, prefix, agent_task("local", agent(provider="local")))
        got = await results.wait_results(2)
    error = got["rebinding"]["error"]
    assert error["retryable"] is False
    assert "public.provider.test (127.0.0.1) is a loopback address" in error["message"]
    assert asked[:2] == ["public.provider.test", "public.provider.test"]
    # Allowed, a name that only the worker's checked answer resolves still connects.
    assert got["local"]["outcome"] == "succeeded", got["local"]
    [call] = fake.requests
    assert call["all_headers"]["host"] == f"private.provider.test:{fake.port}"


# -- what comes back ---------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 404, 429, 500, 503])
async def test_provider_error_bodies_never_reach_the_task(
    r: Redis, prefix: str, fake: FakeProviders, tmp_path: Path, status: int
) -> None:
    providers = fake.write_providers_file(tmp_path / "providers.json")
    secret = "sk-live-canary-readback-0123456789"
    prompt = f"{secret} [fake:status={status}]"  # the fake's error quotes the message back
    await add_tasks(
        r,
        prefix,
        agent_task("openai", agent(provider="openai"), prompt),
        agent_task("anthropic", agent(provider="anthropic"), prompt),
    )
    results = Results(r, prefix)
    async with running_worker(worker_config(prefix, providers_file=str(providers))):
        got = await results.wait_results(2)
    assert all(secret in json.dumps(q["body"]) for q in fake.requests)  # it was sent…
    for task_id, code in (("openai", "fake_error"), ("anthropic", None)):
        error = got[task_id]["error"]
        assert secret not in json.dumps(got[task_id])  # …and never came back
        assert "you said" not in json.dumps(got[task_id])
        assert error["message"].startswith(f'{task_id} provider "{task_id}": HTTP {status} (')
        if code is not None:
            assert error["message"].endswith(f"({code})")
        assert error["retryable"] is (status in (429, 500, 503))
    assert_no_canary(json.dumps(results.messages))
