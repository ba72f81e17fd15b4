"""Any OpenAI-compatible chat-completions endpoint: OpenAI, OpenRouter, Groq, Together,
Ollama, vLLM, and Google's and Cohere's compatibility endpoints, told apart only by the
operator's `base_url` and `api_key_env` for the provider (kind `openai`).

`POST {base_url}/chat/completions` with `stream: true` and
`stream_options.include_usage`; the answer arrives as server-sent `data:` chunks until
`[DONE]`, usage in the last chunk, which is passed on (`on_usage`) as soon as it is read.
A server that reports no usage gets estimated counts (`Completion.estimated`); one that
ignores `stream` and answers plain JSON is read too.
"""

from __future__ import annotations

from typing import Any

import httpx

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


def request_body(request: ChatRequest) -> dict[str, Any]:
    agent = request.agent
    messages = [{"role": "system", "content": request.system}] if request.system else []
    messages.extend({"role": m.role, "content": m.content} for m in request.messages)
    body: dict[str, Any] = {
        "model": agent.model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if agent.temperature is not None:
        body["temperature"] = agent.temperature
    if agent.max_output_tokens is not None:
        body["max_tokens"] = agent.max_output_tokens
    return body


async def complete(request: ChatRequest, on_text: OnText, on_usage: OnUsage) -> Completion:
    spec = request.provider
    key = api_key(spec)
    headers = {"accept": "text/event-stream"}
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    body = request_body(request)
    async with post(spec, "/chat/completions", body, headers, request.read_timeout_s) as response:
        if "text/event-stream" not in response.headers.get("content-type", ""):
            return await _read_whole(request, response)
        return await _read_stream(request, response, on_text, on_usage)


async def _read_stream(
    request: ChatRequest, response: httpx.Response, on_text: OnText, on_usage: OnUsage
) -> Completion:
    label = request.provider.label
    parts: list[str] = []
    usage: dict[str, Any] | None = None
    ended = False
    done = False
    async for _event, data in sse_events(response):
        # Read to the end even after [DONE]: a body left unread closes the connection
        # instead of returning it to the pool.
        if done or data.strip() == "[DONE]":
            done = ended = True
            continue
        chunk = parse_event(label, data)
        _raise_stream_error(label, chunk)
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            text = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(text, str) and text:
                parts.append(text)
                await on_text(text)
            if choice.get("finish_reason"):
                ended = True
        if isinstance(chunk.get("usage"), dict):
            usage = chunk["usage"]
            # Billed now, whatever happens to the rest of the stream.
            await on_usage(
                _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))
            )
    if not ended:
        raise ProviderError(f"{label}: the stream ended before the answer did")
    return _completion(request, "".join(parts), usage)


async def _read_whole(request: ChatRequest, response: httpx.Response) -> Completion:
    label = request.provider.label
    body = parse_event(label, (await response.aread()).decode("utf-8", "replace"))
    _raise_stream_error(label, body)
    try:
        text = body["choices"][0]["message"]["content"] or ""
    except (KeyError, IndexError, TypeError):
        raise ProviderError(f"{label}: the answer has no choices[0].message.content") from None
    usage = body.get("usage")
    return _completion(request, str(text), usage if isinstance(usage, dict) else None)


def _raise_stream_error(label: str, chunk: dict[str, Any]) -> None:
    error = chunk.get("error")
    if error is not None:
        raise stream_error(label, error)


def _completion(request: ChatRequest, text: str, usage: dict[str, Any] | None) -> Completion:
    if usage is None:
        return Completion(
            text, estimate_tokens(request.prompt_text()), estimate_tokens(text), estimated=True
        )
    return Completion(
        text, _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))
    )


def _count(value: Any) -> int:
    return value if type(value) is int and value >= 0 else 0
