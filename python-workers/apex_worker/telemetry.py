"""OpenTelemetry traces of task executions and LLM calls, optional and off by default.

On only when the `otel` extra is installed (`pip install 'apex-worker[otel]'`) and the
standard environment names a collector (`OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`; not with `OTEL_SDK_DISABLED=true` or
`OTEL_TRACES_EXPORTER=none`). Then each execution is a span continuing the trace of
the task message's `traceparent` (the orchestrator's attempt span), and each LLM call of
the `agent` handler a child span with the GenAI semantic-convention attributes. Off, no
OpenTelemetry module is imported and each hook is a no-op context manager.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from apex_worker.protocol import AgentConfig, TaskError, TaskMessage

log = logging.getLogger(__name__)

#: Instrumentation scope of every span this worker makes.
SCOPE = "apex_worker"


def wanted(env: Mapping[str, str]) -> bool:
    """Whether the environment asks for traces (the orchestrator's rule too)."""

    def equals(key: str, value: str) -> bool:
        return env.get(key, "").strip().lower() == value

    if equals("OTEL_SDK_DISABLED", "true") or equals("OTEL_TRACES_EXPORTER", "none"):
        return False
    keys = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
    return any(env.get(k, "").strip() for k in keys)


class _Tracing:
    """The tracer provider and the handful of OpenTelemetry names the hooks use; built
    only when tracing is on, so nothing of OpenTelemetry is imported otherwise."""

    def __init__(self) -> None:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES still win: Resource.create
        # merges the environment over these defaults.
        attributes: dict[str, Any] = {}
        if not os.environ.get("OTEL_SERVICE_NAME"):
            attributes["service.name"] = "apex-worker"
        self.provider = TracerProvider(resource=Resource.create(attributes))
        # Endpoint, headers, timeout and batching come from the OTEL_* environment.
        self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        self.tracer = self.provider.get_tracer(SCOPE)
        self.trace = trace
        self.propagator = TraceContextTextMapPropagator()

    def error(self, span: Any, kind: str, message: str) -> None:
        span.set_attribute("error.type", kind)
        span.set_status(self.trace.Status(self.trace.StatusCode.ERROR, message[:1024]))


_tracing: _Tracing | None = None
_decided = False


def tracing() -> _Tracing | None:
    """The tracer, set up on first use when the environment asks and the extra is
    installed; `None` otherwise (decided once per process)."""
    global _tracing, _decided
    if not _decided:
        _decided = True
        if wanted(os.environ):
            try:
                _tracing = _Tracing()
            except ImportError:
                log.warning(
                    "OTEL_EXPORTER_OTLP_* is set but the `otel` extra is not installed "
                    "(pip install 'apex-worker[otel]'): not tracing"
                )
            else:
                log.info("exporting OpenTelemetry traces over OTLP/HTTP")
    return _tracing


def shutdown() -> None:
    """Exports what is buffered; call once when the worker exits."""
    if _tracing is not None:
        _tracing.provider.shutdown()


class Execution:
    """The span of one execution; `finish` records its outcome."""

    __slots__ = ("_span", "_tracing")

    def __init__(self, tracing: _Tracing | None, span: Any) -> None:
        self._tracing = tracing
        self._span = span

    def finish(self, error: TaskError | None) -> None:
        if self._tracing is None:
            return
        if error is None:
            self._span.set_status(self._tracing.trace.StatusCode.OK)
        else:
            self._tracing.error(self._span, error.kind, error.message)


@contextmanager
def execution(task: TaskMessage, worker_id: str) -> Iterator[Execution]:
    """A span for running `task`, the current span while the handler runs, a child of
    the orchestrator's attempt span when the message carries its `traceparent`."""
    t = tracing()
    if t is None:
        yield Execution(None, None)
        return
    parent = t.propagator.extract({"traceparent": task.traceparent or ""})
    attributes: dict[str, Any] = {
        "apex.run_id": task.run_id,
        "apex.task_id": task.task_id,
        "apex.attempt": task.attempt,
        "apex.handler": task.handler,
        "apex.queue": task.queue,
        "apex.worker_id": worker_id,
    }
    if task.agent is not None:
        attributes["apex.agent"] = task.agent.name
    with t.tracer.start_as_current_span(
        "apex.execute",
        context=parent,
        kind=t.trace.SpanKind.CONSUMER,
        attributes=attributes,
    ) as span:
        yield Execution(t, span)


class LlmCall:
    """The span of one LLM call; `usage` records what the provider billed."""

    __slots__ = ("_span",)

    def __init__(self, span: Any) -> None:
        self._span = span

    def usage(self, input_tokens: int, output_tokens: int, cost_usd: float) -> None:
        if self._span is None:
            return
        self._span.set_attribute("gen_ai.usage.input_tokens", input_tokens)
        self._span.set_attribute("gen_ai.usage.output_tokens", output_tokens)
        self._span.set_attribute("apex.cost_usd", cost_usd)


@contextmanager
def llm_call(agent: AgentConfig, system: str) -> Iterator[LlmCall]:
    """A span around one chat call to `agent`'s provider (API kind `system`), named and
    described as the OpenTelemetry GenAI semantic conventions say. An exception
    escaping the call marks the span failed."""
    t = tracing()
    if t is None:
        yield LlmCall(None)
        return
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": system,
        "gen_ai.request.model": agent.model,
        "apex.agent": agent.name,
        "apex.provider": agent.provider,
    }
    if agent.temperature is not None:
        attributes["gen_ai.request.temperature"] = agent.temperature
    if agent.max_output_tokens is not None:
        attributes["gen_ai.request.max_tokens"] = agent.max_output_tokens
    with t.tracer.start_as_current_span(
        f"chat {agent.model}",
        kind=t.trace.SpanKind.CLIENT,
        attributes=attributes,
        record_exception=True,
        set_status_on_exception=True,
    ) as span:
        yield LlmCall(span)
