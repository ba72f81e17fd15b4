"""Anthropic's Messages API (providers of kind `anthropic`).

`POST {base_url}/v1/messages` (the base URL is the API's root, as in Anthropic's SDKs:
`https://api.anthropic.com`) with `x-api-key`, `anthropic-version: 2023-06-01` and
`stream: true`. Server-sent events: `message_start` (input tokens, passed on at once:
they are billed even if the stream stalls), `content_block_delta` (text),
`message_delta` (output tokens so far), `message_stop`; `error` ends the stream with a
failure. The API has no system role among messages: the agent's system prompt and any
`system` messages go to the `system` field.
"""

from __future__ import annotations

from typing import Any

from apex_worker.agents.provider import (
    ChatRequest,
    Completion,
    OnText,
    OnUsage,
    estimate_tokens,
)
from apex_worker.agents.transport import (
    ProviderError,
    api_key,
    parse_event,
    post,
    sse_events,
    stream_error,
)

API_VERSION = "2023-06-01"
#: The API requires `max_tokens`; this is sent when the agent sets none.
DEFAULT_MAX_TOKENS = 1024
# Errors in the stream that a later attempt cannot fix.
_FATAL_ERRORS = frozenset(
    ("invalid_request_error", "authentication_error", "permission_error", "not_found_error")
)


def request_body(request: ChatRequest) -> dict[str, Any]:
    agent = request.agent
    system = [request.system] if request.system else []
    system.extend(m.content for m in request.messages if m.role == "system")
    body: dict[str, Any] = {
        "model": agent.model,
        "max_tokens": agent.max_output_tokens or DEFAULT_MAX_TOKENS,
        "messages": [
            {"role": m.role, "content": m.content} for m in request.messages if m.role != "system"
        ],
        "stream": True,
    }
    if system:
        body["system"] = "\n\n".join(system)
    if agent.temperature is not None:
        body["temperature"] = agent.temperature
    return body


async def complete(request: ChatRequest, on_text: OnText, on_usage: OnUsage) -> Completion:
    spec = request.provider
    key = api_key(spec)
    headers = {"accept": "text/event-stream", "anthropic-version": API_VERSION}
    if key is not None:
        headers["x-api-key"] = key
    body = request_body(request)
    parts: list[str] = []
    input_tokens: int | None = None
    output_tokens: int | None = None
    stopped = False
    async with post(spec, "/v1/messages", body, headers, request.read_timeout_s) as resp:
        async for _event, data in sse_events(resp):
            if stopped:
                continue  # read to the end, so the connection goes back to the pool
            event = parse_event(spec.label, data)
            kind = event.get("type")
            if kind == "message_start":
                usage = _dict(_dict(event.get("message")).get("usage"))
                input_tokens = _count(usage.get("input_tokens"), input_tokens)
                output_tokens = _count(usage.get("output_tokens"), output_tokens)
                if input_tokens is not None:
                    await on_usage(input_tokens, output_tokens or 0)
            elif kind == "content_block_delta":
                delta = _dict(event.get("delta"))
                text = delta.get("text")
                if delta.get("type") == "text_delta" and isinstance(text, str) and text:
                    parts.append(text)
                    await on_text(text)
            elif kind == "message_delta":
                # Counts here are cumulative: they replace the ones from message_start.
                usage = _dict(event.get("usage"))
                input_tokens = _count(usage.get("input_tokens"), input_tokens)
                output_tokens = _count(usage.get("output_tokens"), output_tokens)
                if input_tokens is not None and output_tokens is not None:
                    await on_usage(input_tokens, output_tokens)
            elif kind == "message_stop":
                stopped = True
            elif kind == "error":
                raise stream_error(spec.label, event.get("error"), _FATAL_ERRORS)
    if not stopped:
        raise ProviderError(f"{spec.label}: the stream ended before message_stop")
    text = "".join(parts)
    if input_tokens is None or output_tokens is None:
        return Completion(
            text, estimate_tokens(request.prompt_text()), estimate_tokens(text), estimated=True
        )
    return Completion(text, input_tokens, output_tokens)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _count(value: Any, previous: int | None) -> int | None:
    return value if type(value) is int and value >= 0 else previous
