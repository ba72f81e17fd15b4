"""Throughput of `apex-worker` on `noop` tasks, against the Redis at REDIS_URL.

Fills a queue under a throwaway prefix with N task messages, starts K `apex-worker
--burst` processes on it, and waits for N results on the results stream. Reports tasks/s
over the workers' busy span (first start to last finish, from the result messages) and
over the wall clock including process start-up. Deletes its keys afterwards.

    python bench/worker_throughput.py --tasks 20000 --workers 1 --concurrency 200
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import time

import redis


def enqueue(r: redis.Redis, prefix: str, n: int) -> None:
    key = f"{prefix}:queue:default"
    r.xgroup_create(key, "workers", id="0", mkstream=True)
    now = int(time.time() * 1000)
    pipe = r.pipeline(transaction=False)
    for i in range(n):
        msg = {
            "v": 1,
            "type": "task",
            "run_id": "r_bench",
            "task_id": f"t{i}",
            "attempt": 1,
            "handler": "noop",
            "input": None,
            "upstream": {},
            "queue": "default",
            "idempotency_key": f"r_bench:t{i}:1",
            "priority": 0,
            "enqueued_at_ms": now,
        }
        pipe.xadd(key, {"m": json.dumps(msg, separators=(",", ":"))})
        if len(pipe) >= 1000:
            pipe.execute()
    pipe.execute()


def collect(r: redis.Redis, prefix: str, n: int, deadline_s: float) -> list[dict]:
    key = f"{prefix}:results"
    results: list[dict] = []
    last = "0-0"
    end = time.monotonic() + deadline_s
    while len(results) < n and time.monotonic() < end:
        reply = r.xread({key: last}, count=5000, block=500)
        for _stream, entries in reply or ():
            for msg_id, fields in entries:
                last = msg_id
                msg = json.loads(fields[b"m"])
                if msg["type"] == "result":
                    results.append(msg)
    return results


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tasks", type=int, default=20_000)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--concurrency", type=int, default=200)
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"))
    args = p.parse_args()

    prefix = f"bench-{secrets.token_hex(4)}"
    r = redis.Redis.from_url(args.redis_url)
    exe = shutil.which("apex-worker", path=os.path.dirname(sys.executable)) or "apex-worker"
    try:
        enqueue(r, prefix, args.tasks)
        t0 = time.monotonic()
        procs = [
            subprocess.Popen(
                [
                    exe,
                    "--burst",
                    "--concurrency",
                    str(args.concurrency),
                    "--redis-url",
                    args.redis_url,
                    "--redis-prefix",
                    prefix,
                    "--log-level",
                    "warning",
                ]
            )
            for _ in range(args.workers)
        ]
        results = collect(r, prefix, args.tasks, deadline_s=300)
        wall = time.monotonic() - t0
        codes = [proc.wait(timeout=60) for proc in procs]
        ok = sum(1 for m in results if m["outcome"] == "succeeded")
        span_ms = max(m["finished_at_ms"] for m in results) - min(
            m["started_at_ms"] for m in results
        )
        print(
            f"{len(results)} results ({ok} succeeded) from {args.workers} worker(s), "
            f"concurrency {args.concurrency}, exit codes {codes}\n"
            f"busy span {span_ms / 1000:.2f}s: {len(results) / (span_ms / 1000):,.0f} tasks/s; "
            f"wall clock incl. start-up {wall:.2f}s: {len(results) / wall:,.0f} tasks/s"
        )
        return 0 if len(results) == args.tasks else 1
    finally:
        keys = list(r.scan_iter(match=f"{prefix}:*"))
        if keys:
            r.delete(*keys)


if __name__ == "__main__":
    raise SystemExit(main())
