"""The OpenAI-compatible and Anthropic providers against the fake providers server: real
HTTP on loopback. What goes over the wire, what comes back, and what each failure
decides. The server is declared the way an operator declares any provider (a
`ProviderSpec` with `allow_private`, as a providers file gives it)."""

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
from apex_worker.agents.transport import ProviderError, error_code, http_clients
from apex_worker.context import Context
from apex_worker.protocol import Price, Progress, Usage
from apex_worker.providers import BUILTIN, ProviderSpec, load_providers
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


Call = tuple[AgentConfig, ProviderSpec]


def ctx(call: Call, sent: list[Any] | None = None, timeout_s: float = 10) -> Context:
    config, provider = call
    return Context(
        run_id="r",
        task_id="t",
        attempt=1,
        idempotency_key="r:t:1",
        worker_id="w",
        emit=(sent if sent is not None else []).append,
        agent=config,
        provider=provider,
        timeout_s=timeout_s,
    )


def openai(fake: FakeProviders, key_env: str | None = "APEX_TEST_KEY", **extra: Any) -> Call:
    spec = ProviderSpec("fast", "openai", fake.base_url, key_env, allow_private=True)
    return AgentConfig("researcher", "fast", "gpt-4o-mini", **extra), spec


def anthropic(fake: FakeProviders, key_env: str | None = "APEX_TEST_KEY", **extra: Any) -> Call:
    spec = ProviderSpec("claude", "anthropic", fake.origin, key_env, allow_private=True)
    return AgentConfig("critic", "claude", "claude-3-5-haiku", **extra), spec


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
    assert output["provider"] == "fast"  # the operator's name for it
    # Streamed: every piece forwarded as progress, in order, then the usage the last
    # chunk stated, before the handler returns.
    *texts, billed = sent
    assert len(texts) > 3
    assert all(isinstance(p, Progress) and p.text_delta for p in texts)
    assert "".join(p.text_delta for p in texts) == output["text"]
    assert billed.text_delta is None
    assert billed.usage == Usage(
        output["usage"]["input_tokens"],
        output["usage"]["output_tokens"],
        output["usage"]["cost_usd"],
    )


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
    assert "".join(p.text_delta for p in sent if p.text_delta) == LIST_ANSWER
    # message_start's usage went out first, before any text; message_delta's after it.
    assert sent[0].usage is not None
    assert sent[0].usage.input_tokens > 0
    billed = output["usage"]
    assert sent[-1].usage == Usage(
        billed["input_tokens"], billed["output_tokens"], billed["cost_usd"]
    )


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
    assert output["provider"] == ("fast" if provider == "openai" else "claude")
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
    kind = "fake_error" if provider == "openai" else "rate_limit_error"
    label = 'openai provider "fast"' if provider == "openai" else 'anthropic provider "claude"'
    assert str(caught.value) == f"{label}: HTTP 429 ({kind})"
    assert context.usage is None
    output = await agent({"prompt": "x"}, {}, context)  # the next attempt gets through
    assert output["text"].endswith("heard: x")


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize(
    ("status", "decision"),
    [
        (302, NoRetry),
        (400, NoRetry),
        (401, NoRetry),
        (404, NoRetry),
        (500, ProviderError),
        (529, ProviderError),
    ],
)
async def test_http_errors_decide_whether_to_retry(
    fake: FakeProviders, provider: str, status: int, decision: type[Exception]
) -> None:
    config = (openai if provider == "openai" else anthropic)(fake)
    with pytest.raises(decision) as caught:
        await agent({"prompt": f"x [fake:status={status}]"}, {}, ctx(config))
    assert f"HTTP {status} (" in str(caught.value)  # with the error's type, not its text
    assert "asked for" not in str(caught.value)
    assert KEY not in str(caught.value)
    assert len(fake.requests) == 1  # a redirect is never followed


async def test_a_missing_key_is_not_retried_and_names_the_variable(
    fake: FakeProviders, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("APEX_TEST_KEY")
    with pytest.raises(NoRetry, match="set the environment variable APEX_TEST_KEY"):
        await agent({"prompt": "x"}, {}, ctx(openai(fake)))
    # The built-in providers need their variables; nothing is sent, nothing resolved.
    builtin = {spec.name: spec for spec in BUILTIN}
    official = (AgentConfig("a", "anthropic", "claude-3-5-haiku"), builtin["anthropic"])
    with pytest.raises(NoRetry, match="set the environment variable ANTHROPIC_API_KEY"):
        await agent({"prompt": "x"}, {}, ctx(official))
    assert fake.requests == []


async def test_a_provider_declared_without_a_key_variable_gets_no_key(
    fake: FakeProviders, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ollama or vLLM: no api_key_env; keys the worker has stay home.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-canary-must-not-travel")
    for call in (openai(fake, key_env=None), anthropic(fake, key_env=None)):
        output = await agent({"prompt": "hi"}, {}, ctx(call))
        assert output["text"].endswith(" heard: hi")
    for request in fake.requests:
        assert "authorization" not in request["all_headers"]
        assert "x-api-key" not in request["all_headers"]


async def test_connections_are_reused_across_calls(fake: FakeProviders) -> None:
    for provider in (openai, openai, openai):
        await agent({"prompt": "x"}, {}, ctx(provider(fake)))
    await agent({"prompt": "x"}, {}, ctx(anthropic(fake)))
    ports = [r["peer_port"] for r in fake.requests]
    assert len(set(ports[:3])) == 1  # one connection for the three calls
    assert len(http_clients) == 2  # one pool per declared provider


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
            *("--providers-file", str(tmp_path / "providers.json")),
            *("--providers-api-key-env", "APEX_TEST_KEY"),
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
    # Written before `listening on`: a worker started next finds the server declared.
    providers = load_providers(log.with_name("providers.json"))
    assert providers["openai"] == ProviderSpec(
        "openai", "openai", f"http://127.0.0.1:{port}/v1", "APEX_TEST_KEY", allow_private=True
    )
    assert providers["anthropic"].base_url == f"http://127.0.0.1:{port}"
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


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (
            b'{"error": {"message": "no", "type": "invalid_request_error", "code": null}}',
            "invalid_request_error",
        ),
        (
            b'{"error": {"message": "no", "type": "x", "code": "context_length_exceeded"}}',
            "context_length_exceeded",
        ),
        (
            b'{"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}',
            "overloaded_error",
        ),
        (b'{"error": {"code": "postgres://u:secret@db/x"}}', None),
        (b'{"error": {"code": "has spaces in it"}}', None),
        (b'{"error": "a sentence with a secret sk-123"}', None),
        (b'{"error": {"type": "' + b"a" * 100 + b'"}}', "a" * 64),
        (b"<html>secret internal page</html>", None),
        (b"\xff\xfe not utf-8", None),
        (b"", None),
    ],
)
def test_only_an_identifier_like_error_code_is_kept(body: bytes, code: str | None) -> None:
    assert error_code(body) == code
