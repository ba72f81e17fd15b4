"""Traces in the worker: off without the environment (nothing of OpenTelemetry imported),
and on, an execution span continuing the task's `traceparent` with the LLM call's
GenAI span under it. The end-to-end test with a real orchestrator and collector is
orchestrator/tests/traces.rs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from support import EXAMPLES

from apex_worker import telemetry
from apex_worker.protocol import TaskError, parse_task

pytest.importorskip("opentelemetry.sdk.trace", reason="needs the otel extra")


def test_the_environment_decides() -> None:
    assert not telemetry.wanted({})
    assert not telemetry.wanted({"OTEL_SERVICE_NAME": "w"})
    assert telemetry.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"})
    assert telemetry.wanted({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"})
    on = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}
    assert not telemetry.wanted(on | {"OTEL_SDK_DISABLED": "True"})
    assert not telemetry.wanted(on | {"OTEL_TRACES_EXPORTER": "none"})


def test_untraced_nothing_of_opentelemetry_is_imported() -> None:
    # redis-py 8 imports the OpenTelemetry SDK's metrics by itself when it is installed:
    # what counts is that the worker adds nothing to that.
    code = (
        "import sys, redis, redis.asyncio\n"
        "before = {m for m in sys.modules if m.startswith('opentelemetry')}\n"
        "from apex_worker import telemetry, worker, cli\n"
        "from apex_worker.agents import handler\n"
        "assert telemetry.tracing() is None\n"
        "with telemetry.execution(None, 'w') as s:\n"  # the task is not read when off
        "    s.finish(None)\n"
        "added = {m for m in sys.modules if m.startswith('opentelemetry')} - before\n"
        "assert not added, sorted(added)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    # The real set-up (OTLP exporter from the environment), plus a copy of every span
    # kept in memory. Nothing listens at the endpoint; its batches are dropped.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    tracing = telemetry._Tracing()
    memory = InMemorySpanExporter()
    tracing.provider.add_span_processor(SimpleSpanProcessor(memory))
    monkeypatch.setattr(telemetry, "_tracing", tracing)
    monkeypatch.setattr(telemetry, "_decided", True)
    yield memory
    tracing.provider.shutdown()


def test_an_execution_continues_the_trace_and_wraps_the_llm_call(spans: Any) -> None:
    task = parse_task((EXAMPLES / "task_traced.json").read_bytes())
    assert task.agent is not None
    assert task.traceparent is not None
    _, trace_hex, parent_hex, _ = task.traceparent.split("-")
    with telemetry.execution(task, "w1") as execution:
        with telemetry.llm_call(task.agent, "openai") as call:
            call.usage(120, 45, 0.0012)
        execution.finish(None)
    finished = {s.name: s for s in spans.get_finished_spans()}
    run = finished["apex.execute"]
    llm = finished["chat gpt-4o-mini"]
    assert format(run.context.trace_id, "032x") == trace_hex
    assert format(run.parent.span_id, "016x") == parent_hex
    assert run.parent.is_remote
    assert llm.context.trace_id == run.context.trace_id
    assert llm.parent.span_id == run.context.span_id
    assert run.attributes["apex.task_id"] == "research.0"
    assert run.attributes["apex.worker_id"] == "w1"
    assert run.status.is_ok
    assert llm.attributes["gen_ai.system"] == "openai"
    assert llm.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert llm.attributes["gen_ai.usage.input_tokens"] == 120
    assert llm.attributes["gen_ai.usage.output_tokens"] == 45
    assert llm.attributes["apex.cost_usd"] == 0.0012
    assert llm.attributes["gen_ai.request.max_tokens"] == 512


def test_a_failed_execution_and_a_failed_call_are_marked(spans: Any) -> None:
    task = parse_task((EXAMPLES / "task_traced.json").read_bytes())
    assert task.agent is not None
    with telemetry.execution(task, "w1") as execution:
        with pytest.raises(RuntimeError), telemetry.llm_call(task.agent, "openai"):
            raise RuntimeError("provider down")
        execution.finish(TaskError(kind="exception", message="provider down", retryable=True))
    finished = {s.name: s for s in spans.get_finished_spans()}
    assert not finished["chat gpt-4o-mini"].status.is_ok
    assert finished["chat gpt-4o-mini"].events[0].name == "exception"
    assert finished["apex.execute"].attributes["error.type"] == "exception"
    assert finished["apex.execute"].status.description == "provider down"


def test_an_untraced_task_starts_its_own_trace(spans: Any) -> None:
    task = parse_task((EXAMPLES / "task.json").read_bytes())
    with telemetry.execution(task, "w1") as execution:
        execution.finish(None)
    (span,) = spans.get_finished_spans()
    assert span.parent is None
