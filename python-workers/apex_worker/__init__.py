"""Apex worker: runs the tasks the Apex orchestrator queues on Redis Streams.

Modules, each with one job:

- `protocol`: the wire contract mirrored from `worker-protocol/` (keys, messages).
- `codec`: JSON in and out (orjson when installed).
- `registry`: handlers by name, and the `@handler` decorator.
- `builtins`: the handlers every worker has (noop, echo, sleep, fail, sum).
- `context`: what a handler knows about its attempt (`ctx`), and progress/log reporting.
- `errors`: `Retry` and `NoRetry`, exceptions that carry a retry decision.
- `execute`: one handler call, its timeout, and the error it turns into.
- `slots`: the concurrency bound the reader reads against.
- `outbox`: batches every write to Redis into pipelines.
- `worker`: the process: reader, attempts, control stream, leases, heartbeats, shutdown.
- `config`, `cli`: settings, and the `apex-worker` command.

Writing a handler:

    from apex_worker import handler, NoRetry

    @handler("summarise")
    async def summarise(input, upstream, ctx):
        await ctx.progress(0.5, "calling the model")
        return {"summary": ...}
"""

from apex_worker.config import WorkerConfig
from apex_worker.context import Context
from apex_worker.errors import NoRetry, Retry
from apex_worker.registry import Registry, default_registry, handler
from apex_worker.version import __version__
from apex_worker.worker import Worker

__all__ = [
    "Context",
    "NoRetry",
    "Registry",
    "Retry",
    "Worker",
    "WorkerConfig",
    "__version__",
    "default_registry",
    "handler",
]
