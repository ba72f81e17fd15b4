"""Baseline for the load benchmarks: a bare Redis Streams pipeline, no store.

A producer adds N task messages to a stream; two consumer processes read them through
a consumer group in batches, answer each on a results stream and acknowledge it, all
pipelined. Prints one JSON line with messages/s from the first add to the last
answer. This is the ceiling Apex is measured against, on the same machine, in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import time
import uuid

import redis.asyncio as redis

BATCH = 500


async def consume(url: str, stream: str, results: str, name: str, total: int) -> None:
    r = redis.from_url(url)
    while True:
        got = await r.xreadgroup("g", name, {stream: ">"}, count=BATCH, block=200)
        if not got:
            if await r.xlen(results) >= total:
                break
            continue
        entries = got[0][1]
        pipe = r.pipeline(transaction=False)
        for entry_id, fields in entries:
            msg = json.loads(fields[b"m"])
            pipe.xadd(results, {"m": json.dumps({"task_id": msg["task_id"], "output": None})})
        pipe.xack(stream, "g", *[e[0] for e in entries])
        await pipe.execute()
    await r.aclose()


def consumer_process(url: str, stream: str, results: str, name: str, total: int) -> None:
    asyncio.run(consume(url, stream, results, name, total))


async def one_run(url: str, n: int, consumers: int) -> float:
    prefix = f"baseline-{uuid.uuid4().hex[:8]}"
    stream, results = f"{prefix}:q", f"{prefix}:r"
    r = redis.from_url(url)
    await r.xgroup_create(stream, "g", id="0", mkstream=True)
    procs = [
        multiprocessing.Process(target=consumer_process, args=(url, stream, results, f"c{i}", n))
        for i in range(consumers)
    ]
    for p in procs:
        p.start()
    await asyncio.sleep(0.5)  # consumers connected and blocking
    started = time.perf_counter()
    pipe = r.pipeline(transaction=False)
    for i in range(n):
        pipe.xadd(stream, {"m": json.dumps({"task_id": f"t{i}", "handler": "noop", "input": None})})
        if i % 1000 == 999:
            await pipe.execute()
    await pipe.execute()
    while await r.xlen(results) < n:
        await asyncio.sleep(0.002)
    elapsed = time.perf_counter() - started
    for p in procs:
        p.join()
    await r.delete(stream, results)
    await r.aclose()
    return n / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379")
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--consumers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rates = [asyncio.run(one_run(args.redis_url, args.messages, args.consumers)) for _ in range(args.repeat)]
    print(
        json.dumps(
            {
                "workload": "baseline_redis_streams",
                "messages": args.messages,
                "consumers": args.consumers,
                "messages_per_s": [round(x) for x in rates],
                "median_messages_per_s": round(statistics.median(rates)),
            }
        )
    )


if __name__ == "__main__":
    main()
