"""W4 without the orchestrator: how fully `apex-worker` keeps its slots busy.

Starts K `apex-worker` processes of C slots each on a queue under a throwaway prefix,
then, for each repeat, adds N `sleep` task messages in one pipeline and waits for their N
results on the results stream. Reports, in ms from the moment the messages were sent:
the first start, when every slot was busy, the refill gap (the n-th start of the second
wave against the n-th finish of the first), the sleeps' overshoot, the last finish, the
efficiency against the ideal makespan, and each worker's CPU time for the repeat (from
/proc). What is over the ideal here is the workers' share of W4's overhead; the rest is
the orchestrator's (storing the run, pushing the tasks, committing the results).

    python bench/worker_slots.py --tasks 2000 --workers 2 --concurrency 500 --sleep 0.5
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import statistics
import subprocess
import sys
import time

import redis


def task_message(run: str, i: int, seconds: float, now_ms: int) -> str:
    msg = {
        "v": 1,
        "type": "task",
        "run_id": run,
        "task_id": f"t{i}",
        "attempt": 1,
        "handler": "sleep",
        "input": {"seconds": seconds},
        "upstream": {},
        "queue": "w4",
        "idempotency_key": f"{run}:t{i}:1",
        "priority": 0,
        "enqueued_at_ms": now_ms,
    }
    return json.dumps(msg, separators=(",", ":"))


def cpu_ms(pid: int) -> int:
    """User + system CPU time of process `pid`, in ms (clock ticks of 10 ms)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 // os.sysconf("SC_CLK_TCK")


def results_of(r: redis.Redis, key: str, n: int) -> list[dict]:
    results: list[dict] = []
    last = "0-0"
    deadline = time.monotonic() + 120
    while len(results) < n and time.monotonic() < deadline:
        for _stream, entries in r.xread({key: last}, count=5000, block=1000) or ():
            for msg_id, fields in entries:
                last = msg_id
                msg = json.loads(fields[b"m"])
                if msg["type"] == "result":
                    results.append(msg)
    return results


def one_run(
    r: redis.Redis, prefix: str, run: str, args: argparse.Namespace, pids: list[int]
) -> dict:
    results_key = f"{prefix}:results"
    r.delete(results_key)
    now = int(time.time() * 1000)
    pipe = r.pipeline(transaction=False)
    for i in range(args.tasks):
        pipe.xadd(f"{prefix}:queue:w4", {"m": task_message(run, i, args.sleep, now)})
    cpu_before = [cpu_ms(p) for p in pids]
    t0 = time.time() * 1000
    pipe.execute()
    results = results_of(r, results_key, args.tasks)
    if len(results) < args.tasks:
        raise SystemExit(f"only {len(results)} of {args.tasks} results")
    time.sleep(0.3)  # the workers' last flushes, so their CPU counts whole
    starts = sorted(m["started_at_ms"] - t0 for m in results)
    finishes = sorted(m["finished_at_ms"] - t0 for m in results)
    slots = args.workers * args.concurrency
    refill = sorted(s - f for s, f in zip(starts[slots:], finishes, strict=False))
    overshoot = sorted(
        m["finished_at_ms"] - m["started_at_ms"] - args.sleep * 1000 for m in results
    )
    ideal = math.ceil(args.tasks / slots) * args.sleep * 1000
    return {
        "first_start": round(starts[0]),
        "all_busy": round(starts[min(slots, len(starts)) - 1]),
        "refill_p50": round(statistics.median(refill)) if refill else None,
        "refill_max": round(refill[-1]) if refill else None,
        "overshoot_p50": round(statistics.median(overshoot)),
        "overshoot_max": round(overshoot[-1]),
        "last_finish": round(finishes[-1]),
        "efficiency": round(ideal / finishes[-1], 3),
        "cpu_ms": [cpu_ms(p) - c for p, c in zip(pids, cpu_before, strict=True)],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tasks", type=int, default=2000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=500)
    p.add_argument("--sleep", type=float, default=0.5)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"))
    args = p.parse_args()

    prefix = f"bench-slots-{secrets.token_hex(4)}"
    r = redis.Redis.from_url(args.redis_url)
    command = [sys.executable, "-m", "apex_worker", "--queue", "w4"]
    command += ["--concurrency", str(args.concurrency), "--redis-url", args.redis_url]
    command += ["--redis-prefix", prefix, "--log-level", "warning"]
    procs = [subprocess.Popen(command) for _ in range(args.workers)]
    try:
        time.sleep(3)  # started and reading
        runs = []
        for i in range(args.repeat):
            runs.append(one_run(r, prefix, f"r{i}", args, [proc.pid for proc in procs]))
            print(json.dumps(runs[-1]), flush=True)
            time.sleep(1)
        print(json.dumps({"median_efficiency": statistics.median(x["efficiency"] for x in runs)}))
        return 0
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
        keys = list(r.scan_iter(match=f"{prefix}:*"))
        if keys:
            r.delete(*keys)


if __name__ == "__main__":
    raise SystemExit(main())
