"""Apex worker: runs the tasks the Apex orchestrator queues on Redis Streams.

Modules, each with one job:

- `protocol`: the wire contract mirrored from `worker-protocol/` (keys, messages).
- `codec`: JSON in and out (orjson when installed).
- `registry`: handlers by name, and the `@handler` decorator.
- `builtins`: the handlers every worker has (noop, echo, sleep, fail, sum, agent).
- `agents`: the `agent` handler: prompts, providers (OpenAI-compatible, Anthropic, mock),
  pricing, fan-out, and where provider calls may go.
- `providers`: the providers the worker's operator declares (`--providers-file`).
- `admission`: what a task's agent may ask of the worker: a declared provider, by name.
- `context`: what a handler knows about its attempt (`ctx`): progress, logs, streamed
  text, usage.
- `errors`: `Retry` and `NoRetry`, exceptions that carry a retry decision.
- `spawn`: `Spawn`, an output plus child tasks for the run (dynamic fan-out).
- `execute`: one handler call, its timeout, and the error it turns into.
- `telemetry`: optional OpenTelemetry spans of executions and LLM calls (`otel` extra).
- `logcap`: the per-attempt log budget.
- `slots`: the concurrency bound the reader reads against.
- `outbox`: batches every write to Redis into pipelines.
- `worker`: the process: reader, attempts, control stream, leases, heartbeats, shutdown.
- `config`, `cli`: settings, and the `apex-worker` command.
- `testing.fake_providers`: fake OpenAI and Anthropic HTTP servers for tests;
  `testing.providers_file`: providers files that point workers at them.

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
from apex_worker.protocol import AgentConfig, Usage
from apex_worker.providers import ProviderSpec
from apex_worker.registry import Registry, default_registry, handler
from apex_worker.spawn import Spawn
from apex_worker.version import __version__
from apex_worker.worker import Worker

__all__ = [
    "AgentConfig",
    "Context",
    "NoRetry",
    "ProviderSpec",
    "Registry",
    "Retry",
    "Spawn",
    "Usage",
    "Worker",
    "WorkerConfig",
    "__version__",
    "default_registry",
    "handler",
]
