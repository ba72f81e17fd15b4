"""Fake LLM providers on 127.0.0.1 for tests: an OpenAI-compatible chat-completions
endpoint and Anthropic's Messages API, over real HTTP/1.1 (keep-alive, chunked
server-sent events), with the standard library only.

    python -m apex_worker.testing.fake_providers --port 0 [--log FILE] [--delay-s 0.2]
        [--chunk-delay-s 0.01] [--fail-first-with-429 N]
        [--providers-file FILE [--providers-api-key-env VAR]]

prints `listening on PORT` once it accepts connections (and, with `--providers-file`,
has written a providers file declaring it: `openai` and `anthropic` with
`allow_private: true`, see `providers_file`). In-process:
`with FakeProviders(...) as fake: fake.base_url` (`http://127.0.0.1:PORT/v1`), and
`fake.write_providers_file(path)` for the worker.

Routes:
- `POST /v1/chat/completions`: streams `data:` chunks then `data: [DONE]` when the body
  says `"stream": true` (usage in a last chunk if `stream_options.include_usage`), else
  one JSON completion.
- `POST /v1/messages`: Anthropic's events (`message_start` … `message_stop`) when
  streaming, else one JSON message. Requires `anthropic-version` and `max_tokens`, and
  rejects a `system` role among the messages, as the real API does (400).

Answers are deterministic. When the last user message contains the word "list", the
answer is `1. alpha` / `2. beta` / `3. gamma` on three lines; otherwise it is
`MODEL heard: MESSAGE` (the message cut at 200 characters). Usage: input tokens =
characters of the system prompt and messages // 4 + 1, output tokens = words of the answer.

Directives in the last user message exercise the error paths:
`[fake:status=NNN]` answers HTTP NNN with a provider-shaped error body whose message
quotes the user message back, as real providers sometimes do (429 adds
`Retry-After: 1`, 3xx a `Location` on this server); `[fake:no-usage]` leaves usage
out; `[fake:drop]` cuts the stream off after its first chunk; `[fake:stall]` stops
streaming right after the event that carries usage (Anthropic's `message_start`,
OpenAI's usage chunk) and holds the connection open for `stall_s` (30 s), like a
provider that bills and then hangs.

Options: `--delay-s` sleeps before answering each request; `--chunk-delay-s` between
streamed chunks; `--fail-first-with-429 N` answers the first N requests 429 with
`Retry-After: 1`. `--log FILE` appends one JSON line per request: `path`, `model`,
`status`, `stream`, `started_at`, `finished_at` (Unix seconds), `peer_port` (the
client's port: equal ports mean a reused connection), `headers` (`auth`: whether an
`Authorization` or `x-api-key` header came, `auth_scheme`, `anthropic_version`; never
the key itself) and `body` (the request's JSON).
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from apex_worker.testing.providers_file import write_fake_providers_file

_LIST = re.compile(r"\blist\b", re.IGNORECASE)
_STATUS = re.compile(r"\[fake:status=(\d{3})\]")
LIST_ANSWER = "1. alpha\n2. beta\n3. gamma"


class FakeProviders:
    """The server, run in a background thread by `start()` (or `with`)."""

    def __init__(
        self,
        port: int = 0,
        *,
        log_path: str | Path | None = None,
        delay_s: float = 0.0,
        chunk_delay_s: float = 0.0,
        fail_first_with_429: int = 0,
    ) -> None:
        self.delay_s = delay_s
        self.chunk_delay_s = chunk_delay_s
        self.fail_first_with_429 = fail_first_with_429
        #: How long `[fake:stall]` holds a stream open.
        self.stall_s = 30.0
        self.log_path = Path(log_path) if log_path is not None else None
        #: Every request handled, as logged plus `all_headers` (keys included: in-process
        #: tests may check them; the log file never gets them).
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._count = 0
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.fake = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None
        # Set by stop(): ends stalled streams.
        self.stopping = threading.Event()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def origin(self) -> str:
        """`http://127.0.0.1:PORT`: an Anthropic provider's base URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT/v1`: an OpenAI-compatible provider's base URL."""
        return f"{self.origin}/v1"

    def write_providers_file(self, path: str | Path, **options: Any) -> Path:
        """A providers file declaring this server (`providers_file.fake_providers`
        options: `api_key_env`, `allow_private`, `openai_name`, `anthropic_name`)."""
        return write_fake_providers_file(path, self.port, **options)

    def start(self) -> FakeProviders:
        self._thread = threading.Thread(
            target=self.serve_forever, name="fake-providers", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        # A short poll keeps stop() quick: shutdown waits for the next poll.
        self._server.serve_forever(poll_interval=0.05)

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeProviders:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def next_request_number(self) -> int:
        with self._lock:
            self._count += 1
            return self._count

    def record(self, entry: dict[str, Any], all_headers: dict[str, str]) -> None:
        with self._lock:
            self.requests.append({**entry, "all_headers": all_headers})
            if self.log_path is not None:
                with self.log_path.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(entry) + "\n")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Room for a swarm's worth of connections arriving at once (the default is 5).
    request_queue_size = 1024


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeProviders/1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the JSON log says what happened

    def do_POST(self) -> None:
        fake: FakeProviders = self.server.fake  # type: ignore[attr-defined]
        started_at = time.time()
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        auth = self.headers.get("authorization")
        key = self.headers.get("x-api-key")
        self.status = 0
        self.entry: dict[str, Any] | None = {
            "path": self.path,
            "model": body.get("model") if isinstance(body, dict) else None,
            "status": 0,
            "stream": bool(isinstance(body, dict) and body.get("stream")),
            "started_at": started_at,
            "finished_at": None,
            "peer_port": self.client_address[1],
            "headers": {
                "auth": bool(auth or key),
                "auth_scheme": auth.split(" ", 1)[0] if auth else ("x-api-key" if key else None),
                "anthropic_version": self.headers.get("anthropic-version"),
            },
            "body": body,
        }
        try:
            self._answer(fake, body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        self._record()

    def _record(self) -> None:
        """Logs the request, once: just before the last bytes of the answer go out, so
        a client that has its answer finds the request logged."""
        if self.entry is None:
            return
        fake: FakeProviders = self.server.fake  # type: ignore[attr-defined]
        entry, self.entry = self.entry, None
        entry["status"] = self.status
        entry["finished_at"] = time.time()
        fake.record(entry, {k.lower(): v for k, v in self.headers.items()})

    def _answer(self, fake: FakeProviders, body: Any) -> None:
        anthropic = self.path == "/v1/messages"
        if self.path not in ("/v1/chat/completions", "/v1/messages"):
            return self._error(404, f"no route {self.path}", anthropic)
        if fake.next_request_number() <= fake.fail_first_with_429:
            return self._error(429, "rate limited (fake)", anthropic, retry_after="1")
        if not isinstance(body, dict):
            return self._error(400, "the body is not a JSON object", anthropic)
        problem = _check_anthropic(self, body) if anthropic else _check_openai(body)
        if problem:
            return self._error(400, problem, anthropic)
        messages = body["messages"]
        last_user = next(
            (str(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), ""
        )
        status = _STATUS.search(last_user)
        if status:
            code = int(status.group(1))
            retry_after = "1" if code == 429 else None
            said = f"asked for {code} (fake); you said: {last_user[:200]}"
            return self._error(code, said, anthropic, retry_after)
        if fake.delay_s:
            time.sleep(fake.delay_s)
        answer = _answer_to(body["model"], last_user)
        system = body.get("system") if anthropic else None
        texts = [str(system or "")] + [str(m.get("content", "")) for m in messages]
        usage = (len("".join(texts)) // 4 + 1, len(answer.split()))
        with_usage = "[fake:no-usage]" not in last_user
        drop = "[fake:drop]" in last_user
        stall = "[fake:stall]" in last_user
        if not body.get("stream"):
            reply = _anthropic_message if anthropic else _openai_completion
            return self._json(200, reply(body["model"], answer, usage if with_usage else None))
        if anthropic:
            events = _anthropic_events(body["model"], answer, usage if with_usage else None)
        else:
            include = (body.get("stream_options") or {}).get("include_usage") and with_usage
            events = _openai_chunks(body["model"], answer, usage if include else None)
        self._stream(events, fake, drop, stall)

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.status = status
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self._record()
        self.wfile.write(data)

    def _error(
        self, status: int, message: str, anthropic: bool, retry_after: str | None = None
    ) -> None:
        if anthropic:
            kind = {429: "rate_limit_error", 529: "overloaded_error"}.get(status)
            kind = kind or ("api_error" if status >= 500 else "invalid_request_error")
            payload: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message}}
        else:
            payload = {"error": {"message": message, "type": "fake_error", "code": status}}
        headers = {"retry-after": retry_after} if retry_after else {}
        if 300 <= status < 400:
            # Somewhere a client that follows redirects would go (and be logged going).
            headers["location"] = "/v1/redirected"
        self._json(status, payload, headers)

    def _stream(self, events: Iterator[str], fake: FakeProviders, drop: bool, stall: bool) -> None:
        self.status = 200
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for n, event in enumerate(events):
            if n and fake.chunk_delay_s:
                time.sleep(fake.chunk_delay_s)
            data = event.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
            if stall and '"usage": {' in event:
                self._record()
                fake.stopping.wait(fake.stall_s)
                drop = True
            if drop:
                self.close_connection = True
                self._record()
                return
        self._record()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def _check_openai(body: dict[str, Any]) -> str | None:
    if not isinstance(body.get("model"), str):
        return "you must provide a model parameter"
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        return "messages must be a non-empty array"
    return None


def _check_anthropic(handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> str | None:
    if not handler.headers.get("anthropic-version"):
        return "anthropic-version: header is required"
    if not isinstance(body.get("model"), str):
        return "model: Field required"
    if type(body.get("max_tokens")) is not int:
        return "max_tokens: Field required"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            return f"messages: Unexpected role {m.get('role') if isinstance(m, dict) else m!r}"
    return None


def _answer_to(model: str, message: str) -> str:
    if _LIST.search(message):
        return LIST_ANSWER
    return f"{model} heard: {message[:200]}"


def _pieces(answer: str) -> list[str]:
    return re.findall(r"\S+\s*", answer) or [answer]


def _sse(data: Any, event: str | None = None) -> str:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n"


def _openai_completion(model: str, answer: str, usage: tuple[int, int] | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer},
                "finish_reason": "stop",
            }
        ],
    }
    if usage is not None:
        out["usage"] = _openai_usage(usage)
    return out


def _openai_usage(usage: tuple[int, int]) -> dict[str, int]:
    return {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}


def _openai_chunks(model: str, answer: str, usage: tuple[int, int] | None) -> Iterator[str]:
    base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": model}
    first = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
    yield _sse({**base, "choices": [first]})
    for piece in _pieces(answer):
        choice = {"index": 0, "delta": {"content": piece}, "finish_reason": None}
        yield _sse({**base, "choices": [choice]})
    yield _sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if usage is not None:
        yield _sse({**base, "choices": [], "usage": _openai_usage(usage)})
    yield "data: [DONE]\n\n"


def _anthropic_message(model: str, answer: str, usage: tuple[int, int] | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": answer}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
    }
    if usage is not None:
        out["usage"] = {"input_tokens": usage[0], "output_tokens": usage[1]}
    return out


def _anthropic_events(model: str, answer: str, usage: tuple[int, int] | None) -> Iterator[str]:
    message = _anthropic_message(model, "", None) | {"content": [], "stop_reason": None}
    if usage is not None:
        message["usage"] = {"input_tokens": usage[0], "output_tokens": 1}
    yield _sse({"type": "message_start", "message": message}, "message_start")
    block = {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    yield _sse(block, "content_block_start")
    yield _sse({"type": "ping"}, "ping")
    for piece in _pieces(answer):
        delta = {"type": "content_block_delta", "index": 0}
        yield _sse(delta | {"delta": {"type": "text_delta", "text": piece}}, "content_block_delta")
    yield _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
    end: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
    }
    if usage is not None:
        end["usage"] = {"output_tokens": usage[1]}
    yield _sse(end, "message_delta")
    yield _sse({"type": "message_stop"}, "message_stop")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m apex_worker.testing.fake_providers",
        description="Fake OpenAI-compatible and Anthropic endpoints on 127.0.0.1, for tests.",
    )
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--log", metavar="FILE", help="append one JSON line per request")
    p.add_argument("--delay-s", type=float, default=0.0, help="sleep before each answer")
    p.add_argument("--chunk-delay-s", type=float, default=0.0, help="sleep between chunks")
    p.add_argument("--fail-first-with-429", type=int, default=0, metavar="N")
    p.add_argument(
        "--providers-file",
        metavar="FILE",
        help="write a providers file declaring this server (openai, anthropic) for workers",
    )
    p.add_argument(
        "--providers-api-key-env",
        metavar="VAR",
        help="in that file, the variable whose value workers send as the key",
    )
    args = p.parse_args(argv)
    fake = FakeProviders(
        args.port,
        log_path=args.log,
        delay_s=args.delay_s,
        chunk_delay_s=args.chunk_delay_s,
        fail_first_with_429=args.fail_first_with_429,
    )

    def stop(signum: int, frame: object) -> None:
        # shutdown() waits for serve_forever, which runs in this thread: hand it off.
        fake.stopping.set()
        threading.Thread(target=fake._server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.providers_file:
        fake.write_providers_file(args.providers_file, api_key_env=args.providers_api_key_env)
    print(f"listening on {fake.port}", flush=True)
    fake.serve_forever()
    fake._server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
