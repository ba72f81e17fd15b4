"""Settings of one worker process. The CLI fills them from flags and environment; tests
build them directly."""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass, field


def new_worker_id() -> str:
    """`{hostname}-{pid}-{4 hex}`: readable in dashboards, unique across restarts that
    reuse a pid. It is also the worker's consumer name in the queue groups."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


@dataclass(slots=True)
class WorkerConfig:
    queues: list[str] = field(default_factory=lambda: ["default"])
    #: Attempts run at once: the size of the slot counter.
    concurrency: int = 200
    redis_url: str = "redis://127.0.0.1:6379"
    redis_prefix: str = "apex"
    worker_id: str = field(default_factory=new_worker_id)
    heartbeat_interval_s: float = 2.0
    #: How often in-flight entries are re-claimed; must stay well under the
    #: orchestrator's visibility timeout.
    lease_interval_s: float = 3.0
    #: On SIGTERM, how long in-flight attempts may finish before they are released.
    shutdown_grace_s: float = 30.0
    #: Exit once the queues are empty and nothing is in flight.
    burst: bool = False
    #: Longest a blocking XREADGROUP / XREAD waits; bounds how late an idle reader
    #: notices a freed slot in burst mode or a broken connection.
    block_ms: int = 1000
    #: A result larger than this fails with `invalid_output` instead of bloating Redis.
    max_output_bytes: int = 16 * 1024 * 1024
    #: The outbox sends at once when idle and batches while Redis is busy; a batch of
    #: this many commands goes out without waiting for the rest of the loop's pass.
    flush_batch: int = 200
    #: Streamed text of one attempt goes out at most this often, deltas joined.
    text_interval_s: float = 0.1
    #: The operator's providers file (`apex_worker.providers`); None: the built-in ones.
    providers_file: str | None = None
    #: Log lines one attempt may send; the rest are counted and summed up in one line.
    max_log_lines_per_attempt: int = 1000
    #: Bytes of log text one attempt may send (each line is also cut to 64 KiB).
    max_log_bytes_per_attempt: int = 1024 * 1024

    def validate(self) -> None:
        if not self.queues or any(not q for q in self.queues):
            raise ValueError("at least one non-empty queue name is required")
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        for name in ("heartbeat_interval_s", "lease_interval_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.text_interval_s < 0:
            raise ValueError("text_interval_s must not be negative")
        if self.shutdown_grace_s < 0:
            raise ValueError("shutdown_grace_s must not be negative")
        if self.block_ms < 1:
            raise ValueError("block_ms must be at least 1")
        if self.max_log_lines_per_attempt < 0 or self.max_log_bytes_per_attempt < 0:
            raise ValueError("per-attempt log caps must not be negative")
