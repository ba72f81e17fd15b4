"""HTTP for the providers: one pooled `httpx.AsyncClient` per declared provider
(connections are reused across attempts), per-request timeouts, server-sent events, API
keys from the environment, and the rule that turns a failed call into a decision:

| what happened | decision |
| --- | --- |
| 429 | `Retry(after_s=Retry-After, default 5 s)` |
| 5xx, 408, timeout, connection error, broken stream | retryable: `ProviderError`, or |
| | `Retry(after_s=…)` when a Retry-After came with it |
| 3xx (redirects are never followed), any other 4xx | `NoRetry` |
| no API key | `NoRetry` naming the environment variable |
| a non-public address without `allow_private` | `NoRetry` (`destination`) |

An error says the status and the provider's error code or type (`openai provider
"fast": HTTP 400 (invalid_request_error)`), never the body's text: whatever answered may
not be the provider, and its words must not reach the task's error, where anyone who
can read the run would see them. Keys are sent in headers only, never logged and never
put in an error message.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import os
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from apex_worker.agents import destination
from apex_worker.agents.errors import ProviderError
from apex_worker.codec import dumps
from apex_worker.errors import NoRetry, Retry
from apex_worker.providers import ProviderSpec

__all__ = ["ProviderError"]

log = logging.getLogger("apex_worker.agents")

CONNECT_TIMEOUT_S = 10.0
#: How long to wait for the provider's next bytes when the task sets no timeout.
DEFAULT_READ_TIMEOUT_S = 120.0
#: Wait before the next attempt after a 429 without a usable Retry-After.
DEFAULT_RETRY_AFTER_S = 5.0
# Room for a worker's whole semaphore of concurrent calls to one provider.
_LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=200)
# An error code worth showing: identifier-like, so a code field cannot carry prose
# (or a secret with spaces or slashes) into the task's error.
_ERROR_CODE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")
_MAX_CODE_CHARS = 64
# Read at most this much of an error body: only its code is wanted.
_MAX_ERROR_BODY_BYTES = 64 * 1024


class HttpClients:
    """The worker's HTTP clients, one per declared provider, each with its own pool.

    A client belongs to the event loop that made it; asked from another loop (each test
    has its own), the pool starts afresh. The worker closes them at shutdown."""

    def __init__(self) -> None:
        self._clients: dict[ProviderSpec, httpx.AsyncClient] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self, spec: ProviderSpec) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._clients, self._loop = {}, loop
        client = self._clients.get(spec)
        if client is None or client.is_closed:
            client = httpx.AsyncClient(
                transport=destination.guarded_transport(spec.label, spec.allow_private, _LIMITS),
                # Never follow a redirect: it would take the request, key included,
                # somewhere the operator did not declare.
                follow_redirects=False,
                # No proxies, .netrc credentials or other settings from the environment:
                # the operator's providers file says everything about a provider.
                trust_env=False,
            )
            self._clients[spec] = client
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


def api_key(spec: ProviderSpec) -> str | None:
    """The provider's key from the worker's environment: None when the operator declared
    no `api_key_env` (a local server), else the variable's value, which must be set."""
    if spec.api_key_env is None:
        return None
    key = os.environ.get(spec.api_key_env, "").strip()
    if not key:
        raise NoRetry(
            f"{spec.label}: no API key: set the environment variable {spec.api_key_env} "
            "on the worker"
        )
    return key


def timeout(read_s: float) -> httpx.Timeout:
    return httpx.Timeout(read_s, connect=CONNECT_TIMEOUT_S)


@asynccontextmanager
async def post(
    spec: ProviderSpec,
    path: str,
    body: dict[str, Any],
    headers: dict[str, str],
    read_timeout_s: float,
) -> AsyncIterator[httpx.Response]:
    """POSTs `body` as JSON to the provider's `base_url + path` and yields the streaming
    response once its status is good. Errors, including those raised while the caller
    reads the body, become decisions (see the module's table)."""
    if spec.base_url is None:
        raise NoRetry(f"{spec.label}: declared without a base_url")
    url = spec.base_url.rstrip("/") + path
    await destination.check(spec.label, url, spec.allow_private)
    client = http_clients.get(spec)
    headers = {"content-type": "application/json", **headers}
    try:
        request = client.build_request(
            "POST", url, content=dumps(body), headers=headers, timeout=timeout(read_timeout_s)
        )
        response = await client.send(request, stream=True)
        try:
            if response.status_code >= 300:
                raise error_for_status(spec.label, response, await _error_body(response))
            yield response
        finally:
            await response.aclose()
    except httpx.HTTPError as exc:
        # Only the exception's type reaches the task: its text can quote what the other
        # end sent (h11 shows a bad status line's bytes), and `from None` keeps it out of
        # the traceback too. The worker's own log, which only the operator reads, has it.
        log.info("%s: %s: %s", spec.label, type(exc).__name__, exc)
        what = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
        raise ProviderError(f"{spec.label}: {what} ({type(exc).__name__})") from None


async def _error_body(response: httpx.Response) -> bytes:
    body = b""
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) >= _MAX_ERROR_BODY_BYTES:
            break
    return body[:_MAX_ERROR_BODY_BYTES]


def error_for_status(label: str, response: httpx.Response, body: bytes = b"") -> Exception:
    status = response.status_code
    code = error_code(body)
    what = f"{label}: HTTP {status}" + (f" ({code})" if code else "")
    after = retry_after_s(response.headers)
    if status == 429:
        return Retry(what, after_s=DEFAULT_RETRY_AFTER_S if after is None else after)
    if status >= 500 or status == 408:
        return ProviderError(what) if after is None else Retry(what, after_s=after)
    if status < 400:
        return NoRetry(f"{what}: a redirect, which the worker never follows")
    return NoRetry(what)


def error_code(body: bytes) -> str | None:
    """The provider's error code or type from a JSON error body (`error.code`, else
    `error.type`, else `type`), if it is an identifier; never any other text."""
    try:
        parsed: Any = json.loads(body)
    except ValueError:
        return None
    if not isinstance(parsed, dict):
        return None
    error = parsed.get("error")
    candidates = [error.get("code"), error.get("type")] if isinstance(error, dict) else []
    candidates.append(parsed.get("type") if parsed.get("type") != "error" else None)
    for candidate in candidates:
        code = shown_code(candidate)
        if code:
            return code
    return None


def shown_code(value: Any) -> str | None:
    """`value` if it is an identifier-like error code, cut to 64 characters."""
    if isinstance(value, str) and _ERROR_CODE.match(value):
        return value[:_MAX_CODE_CHARS]
    return None


def stream_error(label: str, error: Any, fatal_types: frozenset[str] = frozenset()) -> Exception:
    """The decision for an error object a provider sent inside its stream: summarised
    like an HTTP error, not retried when its type is one of `fatal_types`."""
    error = error if isinstance(error, dict) else {}
    code = shown_code(error.get("code")) or shown_code(error.get("type"))
    message = f"{label}: error in the stream" + (f" ({code})" if code else "")
    if error.get("type") in fatal_types:
        return NoRetry(message)
    return ProviderError(message)


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
