"""HTTP for the providers: one pooled `httpx.AsyncClient` per base URL (connections are
reused across attempts), per-request timeouts, server-sent events, API keys from the
environment, and the rule that turns a failed call into a decision:

| what happened | decision |
| --- | --- |
| 429 | `Retry(after_s=Retry-After, default 5 s)` |
| 5xx, 408, timeout, connection error, broken stream | retryable: `ProviderError`, or |
| | `Retry(after_s=…)` when a Retry-After came with it |
| any other 4xx | `NoRetry` with the provider's own error message |
| no API key | `NoRetry` naming the environment variable |

Keys are sent in headers only, never logged and never put in an error message.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from apex_worker.codec import dumps
from apex_worker.errors import NoRetry, Retry
from apex_worker.protocol import AgentConfig

CONNECT_TIMEOUT_S = 10.0
#: How long to wait for the provider's next bytes when the task sets no timeout.
DEFAULT_READ_TIMEOUT_S = 120.0
#: Wait before the next attempt after a 429 without a usable Retry-After.
DEFAULT_RETRY_AFTER_S = 5.0
# Room for a worker's whole semaphore of concurrent calls to one provider.
_LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=200)
_MAX_ERROR_CHARS = 500


class ProviderError(RuntimeError):
    """A provider call failed in a way a later attempt may not: retryable."""


class HttpClients:
    """The worker's HTTP clients, one per base URL, each with its own connection pool.

    A client belongs to the event loop that made it; asked from another loop (each test
    has its own), the pool starts afresh. The worker closes them at shutdown."""

    def __init__(self) -> None:
        self._clients: dict[str, httpx.AsyncClient] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self, base_url: str) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._clients, self._loop = {}, loop
        client = self._clients.get(base_url)
        if client is None or client.is_closed:
            client = httpx.AsyncClient(limits=_LIMITS, follow_redirects=False)
            self._clients[base_url] = client
        return client

    def __len__(self) -> int:
        return len(self._clients)

    async def aclose(self) -> None:
        clients, self._clients = self._clients, {}
        if self._loop is not asyncio.get_running_loop():
            return  # made by a loop that is gone; nothing to close from here
        for client in clients.values():
            await client.aclose()


#: The pool every provider call of this process uses.
http_clients = HttpClients()


def api_key(agent: AgentConfig, default_env: str, default_base_url: str) -> str | None:
    """The key from the worker's environment. Required when the agent names its variable
    (`api_key_env`) or talks to the provider's own endpoint; for another base URL (a
    local Ollama or vLLM) the default variable is used when set, and no key otherwise."""
    env = agent.api_key_env or default_env
    key = os.environ.get(env, "").strip()
    if key:
        return key
    own_endpoint = agent.base_url is None or agent.base_url.rstrip("/") == default_base_url
    if agent.api_key_env or own_endpoint:
        raise NoRetry(
            f"{agent.provider}: no API key for agent {agent.name!r}: "
            f"set the environment variable {env} on the worker"
        )
    return None


def timeout(read_s: float) -> httpx.Timeout:
    return httpx.Timeout(read_s, connect=CONNECT_TIMEOUT_S)


@asynccontextmanager
async def post(
    provider: str,
    base_url: str,
    path: str,
    body: dict[str, Any],
    headers: dict[str, str],
    read_timeout_s: float,
) -> AsyncIterator[httpx.Response]:
    """POSTs `body` as JSON to `base_url + path` and yields the streaming response once
    its status is good. Errors, including those raised while the caller reads the body,
    become decisions (see the module's table)."""
    base_url = base_url.rstrip("/")
    client = http_clients.get(base_url)
    url = base_url + path
    headers = {"content-type": "application/json", **headers}
    try:
        request = client.build_request(
            "POST", url, content=dumps(body), headers=headers, timeout=timeout(read_timeout_s)
        )
        response = await client.send(request, stream=True)
        try:
            if response.status_code >= 400:
                await response.aread()
                raise error_for_status(provider, response)
            yield response
        finally:
            await response.aclose()
    except httpx.TimeoutException as exc:
        raise ProviderError(f"{provider}: timed out ({type(exc).__name__}) at {url}") from exc
    except httpx.HTTPError as exc:
        raise ProviderError(f"{provider}: {type(exc).__name__} at {url}: {exc}") from exc


def error_for_status(provider: str, response: httpx.Response) -> Exception:
    status = response.status_code
    what = f"{provider}: HTTP {status} from {response.request.url}: {error_message(response)}"
    after = retry_after_s(response.headers)
    if status == 429:
        return Retry(what, after_s=DEFAULT_RETRY_AFTER_S if after is None else after)
    if status >= 500 or status == 408:
        return ProviderError(what) if after is None else Retry(what, after_s=after)
    return NoRetry(what)


def error_message(response: httpx.Response) -> str:
    """The provider's own words: `error.message` in OpenAI's and Anthropic's error
    bodies, else the start of the body."""
    text = response.text
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])[:_MAX_ERROR_CHARS]
        if isinstance(error, str):
            return error[:_MAX_ERROR_CHARS]
        if isinstance(body.get("message"), str):
            return str(body["message"])[:_MAX_ERROR_CHARS]
    return text.strip()[:_MAX_ERROR_CHARS] or response.reason_phrase


def retry_after_s(headers: httpx.Headers) -> float | None:
    """Seconds from `retry-after-ms`, or `Retry-After` as seconds or an HTTP date."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


async def sse_events(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """The server-sent events of a response as `(event, data)`: the event name
    (`message` when unnamed) and its data lines joined."""
    event, data = "message", list[str]()
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", list[str]()
        elif line.startswith(":"):
            continue  # a comment (keep-alive)
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            elif name == "event":
                event = value
    if data:
        yield event, "\n".join(data)


def parse_event(provider: str, data: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        raise ProviderError(f"{provider}: the stream sent data that is not JSON") from None
    if not isinstance(value, dict):
        raise ProviderError(f"{provider}: the stream sent a JSON value that is not an object")
    return value
