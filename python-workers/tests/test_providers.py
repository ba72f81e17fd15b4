"""The OpenAI-compatible and Anthropic providers against the fake providers server: real
HTTP on loopback. What goes over the wire, what comes back, and what each failure
decides."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from apex_worker import AgentConfig, NoRetry, Retry
from apex_worker.agents import agent
from apex_worker.agents.transport import ProviderError, http_clients
from apex_worker.context import Context
from apex_worker.protocol import Price, Progress, Usage
from apex_worker.testing.fake_providers import LIST_ANSWER, FakeProviders

KEY = "sk-test-not-a-real-key"


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeProviders]:
    monkeypatch.setenv("APEX_TEST_KEY", KEY)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("APEX_PRICES", raising=False)
    with FakeProviders() as server:
        yield server
        await http_clients.aclose()


def ctx(config: AgentConfig, sent: list[Any] | None = None, timeout_s: float = 10) -> Context:
    return Context(
        run_id="r",
        task_id="t",
        attempt=1,
        idempotency_key="r:t:1",
        worker_id="w",
        emit=(sent if sent is not None else []).append,
        agent=config,
        timeout_s=timeout_s,
    )


def openai(fake: FakeProviders, **extra: Any) -> AgentConfig:
    fields: dict[str, Any] = {"base_url": fake.base_url, "api_key_env": "APEX_TEST_KEY"}
    return AgentConfig("researcher", "openai", "gpt-4o-mini", **(fields | extra))


def anthropic(fake: FakeProviders, **extra: Any) -> AgentConfig:
    fields: dict[str, Any] = {"base_url": fake.base_url, "api_key_env": "APEX_TEST_KEY"}
    return AgentConfig("critic", "anthropic", "claude-3-5-haiku", **(fields | extra))


async def test_openai_request_has_the_chat_completions_shape(fake: FakeProviders) -> None:
    config = openai(fake, system_prompt="You are careful.", temperature=0.2, max_output_tokens=64)
    sent: list[Any] = []
    input = {"prompt": "Research {{input.topic}} after {{upstream.plan.text}}", "topic": "tides"}
    output = await agent(input, {"plan": {"text": "moon"}}, ctx(config, sent))
    [request] = fake.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["all_headers"]["authorization"] == f"Bearer {KEY}"
    assert request["body"] == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are careful."},
            {"role": "user", "content": "Research tides after moon"},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.2,
        "max_tokens": 64,
    }
    assert output["text"] == "gpt-4o-mini heard: Research tides after moon"
    # Streamed: every piece forwarded as progress, in order.
    assert len(sent) > 3
    assert all(isinstance(p, Progress) and p.text_delta for p in sent)
    assert "".join(p.text_delta for p in sent) == output["text"]


async def test_anthropic_request_has_the_messages_api_shape(fake: FakeProviders) -> None:
    config = anthropic(fake, system_prompt="You critique.", temperature=0.0)
    chat = [
        {"role": "system", "content": "Be short."},
        {"role": "user", "content": "Give me a list of {{input.n}}"},
    ]
    sent: list[Any] = []
    output = await agent({"messages": chat, "n": 3}, {}, ctx(config, sent))
    [request] = fake.requests
    headers = request["all_headers"]
    assert request["path"] == "/v1/messages"
    assert (headers["x-api-key"], headers["anthropic-version"]) == (KEY, "2023-06-01")
    assert "authorization" not in headers
    assert request["body"] == {
        "model": "claude-3-5-haiku",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "Give me a list of 3"}],
        "system": "You critique.\n\nBe short.",
        "stream": True,
        "temperature": 0.0,
    }
    assert output["text"] == LIST_ANSWER
    assert "".join(p.text_delta for p in sent) == LIST_ANSWER


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_usage_and_cost_come_from_the_provider(fake: FakeProviders, provider: str) -> None:
    config = (openai if provider == "openai" else anthropic)(fake)
    context = ctx(config)
    output = await agent({"prompt": "Give me a list"}, {}, context)
    tokens = (len("Give me a list") // 4 + 1, len(LIST_ANSWER.split()))
    price = Price(0.15, 0.6) if provider == "openai" else Price(0.8, 4.0)  # the default table
    cost = round((tokens[0] * price.input_per_mtok + tokens[1] * price.output_per_mtok) / 1e6, 12)
    assert output["usage"] == {
        "input_tokens": tokens[0],
        "output_tokens": tokens[1],
        "cost_usd": cost,
        "price_source": "default",
    }
    assert output["provider"] == provider
    assert context.usage == Usage(tokens[0], tokens[1], cost)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_usage_is_estimated_when_the_server_reports_none(
    fake: FakeProviders, provider: str
) -> None:
    config = (openai if provider == "openai" else anthropic)(fake)
    prompt = "hello [fake:no-usage]"
    output = await agent({"prompt": prompt}, {}, ctx(config))
    assert output["usage"]["estimated"] is True
    assert output["usage"]["input_tokens"] == len(prompt) // 4 + 1
    assert output["usage"]["output_tokens"] == len(output["text"]) // 4 + 1


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_429_is_a_retry_after_the_servers_delay(fake: FakeProviders, provider: str) -> None:
    fake.fail_first_with_429 = 1
    config = (openai if provider == "openai" else anthropic)(fake)
    context = ctx(config)
    with pytest.raises(Retry) as caught:
        await agent({"prompt": "x"}, {}, context)
    assert caught.value.after_s == 1.0
    assert "HTTP 429" in str(caught.value)
    assert "rate limited (fake)" in str(caught.value)
    assert context.usage is None
    output = await agent({"prompt": "x"}, {}, context)  # the next attempt gets through
    assert output["text"].endswith("heard: x")


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize(
    ("status", "decision"),
    [(400, NoRetry), (401, NoRetry), (404, NoRetry), (500, ProviderError), (529, ProviderError)],
)
async def test_http_errors_decide_whether_to_retry(
    fake: FakeProviders, provider: str, status: int, decision: type[Exception]
) -> None:
    config = (openai if provider == "openai" else anthropic)(fake)
    with pytest.raises(decision) as caught:
        await agent({"prompt": f"x [fake:status={status}]"}, {}, ctx(config))
    assert f"HTTP {status}" in str(caught.value)
    assert f"asked for {status} (fake)" in str(caught.value)  # the provider's own message
    assert KEY not in str(caught.value)


async def test_a_missing_key_is_not_retried_and_names_the_variable(
    fake: FakeProviders, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("APEX_TEST_KEY")
    with pytest.raises(NoRetry, match="set the environment variable APEX_TEST_KEY"):
        await agent({"prompt": "x"}, {}, ctx(openai(fake)))
    # The provider's own endpoint needs its default variable; nothing is sent.
    official = AgentConfig("a", "anthropic", "claude-3-5-haiku")
    with pytest.raises(NoRetry, match="set the environment variable ANTHROPIC_API_KEY"):
        await agent({"prompt": "x"}, {}, ctx(official))
    assert fake.requests == []


async def test_a_local_server_needs_no_key(fake: FakeProviders) -> None:
    # Ollama or vLLM: a base URL and no api_key_env; OPENAI_API_KEY is unset.
    config = AgentConfig("local", "openai", "llama3", base_url=fake.base_url)
    output = await agent({"prompt": "hi"}, {}, ctx(config))
    assert output["text"] == "llama3 heard: hi"
    assert "authorization" not in fake.requests[0]["all_headers"]


async def test_connections_are_reused_across_calls(fake: FakeProviders) -> None:
    for provider in (openai, anthropic, openai):
        await agent({"prompt": "x"}, {}, ctx(provider(fake)))
    assert len({r["peer_port"] for r in fake.requests}) == 1
    assert len(http_clients) == 1


async def test_a_broken_stream_is_retryable(fake: FakeProviders) -> None:
    for provider in (openai, anthropic):
        with pytest.raises(ProviderError):
            await agent({"prompt": "x [fake:drop]"}, {}, ctx(provider(fake)))


async def test_the_tasks_timeout_bounds_the_wait_for_the_provider(fake: FakeProviders) -> None:
    fake.delay_s = 2.0
    with pytest.raises(ProviderError, match="timed out"):
        await agent({"prompt": "x"}, {}, ctx(openai(fake), timeout_s=0.2))


async def test_a_non_streaming_server_is_read_too(fake: FakeProviders) -> None:
    # Some OpenAI-compatible servers ignore `stream`; the fake answers JSON without it.
    from apex_worker.agents import openai_compat

    body = openai_compat.request_body
    try:
        openai_compat.request_body = lambda request: body(request) | {"stream": False}  # type: ignore[assignment]
        output = await agent({"prompt": "x"}, {}, ctx(openai(fake)))
    finally:
        openai_compat.request_body = body  # type: ignore[assignment]
    assert output["text"] == "gpt-4o-mini heard: x"
    assert "estimated" not in output["usage"]


# -- the server as a process, as the orchestrator's tests run it -----------------------


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int, Path]]:
    log = tmp_path / "requests.jsonl"
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "apex_worker.testing.fake_providers", "--port", "0"),
            *("--log", str(log), "--fail-first-with-429", "1", "--delay-s", "0.05"),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on "), line
        yield proc, int(line.split()[-1]), log
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_server_runs_as_a_command_and_logs_each_request(
    server_process: tuple[subprocess.Popen[str], int, Path],
) -> None:
    proc, port, log = server_process
    body = {"model": "m", "messages": [{"role": "user", "content": "a list please"}]}
    url = f"http://127.0.0.1:{port}/v1"
    with httpx.Client(timeout=10) as client:
        first = client.post(f"{url}/chat/completions", json=body, headers={"authorization": "B k"})
        assert (first.status_code, first.headers["retry-after"]) == (429, "1")
        second = client.post(f"{url}/chat/completions", json=body)
        assert second.json()["choices"][0]["message"]["content"] == LIST_ANSWER
        headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
        third = client.post(f"{url}/messages", json=body | {"max_tokens": 9}, headers=headers)
        assert third.json()["content"][0]["text"] == LIST_ANSWER
        assert third.json()["usage"] == {"input_tokens": 4, "output_tokens": 6}
    proc.terminate()
    assert proc.wait(timeout=10) == 0
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(e["path"], e["status"], e["model"]) for e in lines] == [
        ("/v1/chat/completions", 429, "m"),
        ("/v1/chat/completions", 200, "m"),
        ("/v1/messages", 200, "m"),
    ]
    assert [e["headers"]["auth"] for e in lines] == [True, False, True]
    assert lines[2]["headers"]["anthropic_version"] == "2023-06-01"
    assert lines[1]["body"] == body
    assert lines[1]["finished_at"] - lines[1]["started_at"] >= 0.05  # --delay-s
    assert '"k"' not in log.read_text()  # keys never reach the log
