"""Helpers shared by the tests: task messages, a results-stream reader, a worker run in
the test's event loop. Everything talks to the real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from apex_worker import Registry, Worker, WorkerConfig
from apex_worker.builtins import register_builtins

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "worker-protocol" / "examples"
SCHEMA = REPO / "worker-protocol" / "schema" / "protocol.schema.json"
REDIS_URL = "redis://127.0.0.1:6379"

#: Generous safety limit for anything a test waits for; never a speed assertion.
DEADLINE_S = 20.0


def task_message(task_id: str, handler: str, input: Any = None, **extra: Any) -> dict[str, Any]:
    attempt = extra.pop("attempt", 1)
    run_id = extra.pop("run_id", "r_test")
    msg: dict[str, Any] = {
        "v": 1,
        "type": "task",
        "run_id": run_id,
        "task_id": task_id,
        "attempt": attempt,
        "handler": handler,
        "input": input,
        "upstream": {},
        "queue": "default",
        "idempotency_key": f"{run_id}:{task_id}:{attempt}",
        "priority": 0,
        "enqueued_at_ms": int(time.time() * 1000),
    }
    msg.update(extra)
    return msg


async def add_tasks(
    r: Redis, prefix: str, *messages: dict[str, Any], queue: str = "default"
) -> list[str]:
    """XADDs task messages as the orchestrator would; returns their entry ids."""
    ids = []
    for msg in messages:
        entry_id = await r.xadd(f"{prefix}:queue:{queue}", {"m": json.dumps(msg)})
        ids.append(entry_id.decode())
    return ids


def make_registry(**handlers: Callable[..., Any]) -> Registry:
    registry = Registry()
    register_builtins(registry)
    for name, fn in handlers.items():
        registry.register(name, fn)
    return registry


def worker_config(prefix: str, **overrides: Any) -> WorkerConfig:
    config = WorkerConfig(
        redis_url=REDIS_URL,
        redis_prefix=prefix,
        concurrency=10,
        heartbeat_interval_s=0.5,
        block_ms=200,
        shutdown_grace_s=5.0,
    )
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


class Results:
    """Everything the workers sent on `P:results`, read as it arrives."""

    def __init__(self, r: Redis, prefix: str) -> None:
        self._r = r
        self._key = f"{prefix}:results"
        self._last = "0-0"
        self.messages: list[dict[str, Any]] = []

    async def poll(self) -> None:
        reply = await self._r.xread({self._key: self._last}, count=1000, block=100)
        for _stream, entries in reply or ():
            for msg_id, fields in entries:
                self._last = msg_id.decode()
                self.messages.append(json.loads(fields[b"m"]))

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == kind]

    def results(self) -> dict[str, dict[str, Any]]:
        """Result messages by task id (the last one wins)."""
        return {m["task_id"]: m for m in self.of_type("result")}

    async def until(self, done: Callable[[Results], bool], deadline_s: float = DEADLINE_S) -> None:
        end = time.monotonic() + deadline_s
        while not done(self):
            if time.monotonic() > end:
                raise AssertionError(f"timed out; got {self.messages}")
            await self.poll()

    async def wait_results(
        self, n: int, deadline_s: float = DEADLINE_S
    ) -> dict[str, dict[str, Any]]:
        await self.until(lambda s: len(s.results()) >= n, deadline_s)
        return self.results()


@contextlib.asynccontextmanager
async def running_worker(
    config: WorkerConfig, registry: Registry | None = None
) -> AsyncIterator[Worker]:
    """Runs a worker in this event loop; stops it (releasing what is left) on exit."""
    worker = Worker(config, registry if registry is not None else make_registry())
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        if not task.done():
            worker.stop(grace_s=0)
        await asyncio.wait_for(task, DEADLINE_S)


class CaptureServer:
    """A TCP listener on loopback that accepts anything and records every connection and
    every byte it receives: where a worker must send nothing, this proves it did not."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.05)
        self.connections = 0
        self.received = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="capture", daemon=True)

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    def __enter__(self) -> CaptureServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            with conn:
                conn.settimeout(0.5)
                try:
                    while chunk := conn.recv(65536):
                        self.received += chunk
                except OSError:
                    pass
