"""The Python mirror of the wire contract agrees with the golden messages and the schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from support import EXAMPLES

from apex_worker.codec import dumps, loads
from apex_worker.protocol import (
    AgentConfig,
    AttemptRef,
    Cancel,
    Drain,
    Heartbeat,
    Keys,
    LogLine,
    MalformedMessage,
    Progress,
    Released,
    Started,
    TaskError,
    TaskMessage,
    TaskResult,
    Usage,
    WorkerInfo,
    WorkerStopped,
    parse_message,
    parse_task,
)

GOLDEN = sorted(EXAMPLES.glob("*.json"))


def load(path: Path) -> Any:
    return json.loads(path.read_text())


def test_the_golden_examples_are_there() -> None:
    assert len(GOLDEN) >= 13


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_golden_message_round_trips(path: Path) -> None:
    original = load(path)
    parsed = parse_message(original)
    assert parsed.to_dict() == original
    # Through the codec the worker sends with, byte-level JSON included.
    assert loads(dumps(parsed.to_dict())) == original


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_golden_message_validates_against_the_schema(
    path: Path, validator: jsonschema.Draft202012Validator
) -> None:
    validator.validate(load(path))


def test_the_schema_is_valid_draft_2020_12(schema: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_every_message_type_has_a_golden_example() -> None:
    types = {load(p)["type"] for p in GOLDEN}
    assert types == {
        "task",
        "started",
        "result",
        "progress",
        "log",
        "released",
        "heartbeat",
        "worker_stopped",
        "cancel",
        "drain",
    }


def test_keys_live_under_their_prefix() -> None:
    k = Keys("t1")
    assert k.queue("default") == "t1:queue:default"
    assert k.results() == "t1:results"
    assert k.control() == "t1:control"
    assert k.dead_letter() == "t1:dead"
    assert Keys("").prefix == "apex"


def test_minimal_task_gets_serde_defaults() -> None:
    task = parse_task((EXAMPLES / "task_minimal.json").read_bytes())
    assert task.upstream == {}
    assert task.timeout_s is None
    assert task.priority == 0
    assert task.input is None


def test_task_ignores_unknown_fields_like_serde() -> None:
    msg = load(EXAMPLES / "task.json") | {"future_field": [1, 2]}
    assert TaskMessage.from_dict(msg).task_id == "report"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"v": 2}, "unsupported protocol version 2"),
        ({"v": True}, "unsupported protocol version True"),
        ({"type": "result"}, "expected a `task` message"),
        ({"attempt": True}, "field `attempt`"),
        ({"attempt": -1}, "field `attempt`"),
        ({"run_id": 7}, "field `run_id`"),
        ({"upstream": None}, "field `upstream`"),
        ({"timeout_s": "30"}, "field `timeout_s`"),
        ({"priority": 2**31}, "field `priority`"),
    ],
)
def test_malformed_task_names_its_problem(change: dict[str, Any], reason: str) -> None:
    msg = load(EXAMPLES / "task.json") | change
    with pytest.raises(MalformedMessage, match=reason.replace("`", ".")):
        TaskMessage.from_dict(msg)


def test_missing_fields_and_bad_json_are_malformed() -> None:
    msg = load(EXAMPLES / "task.json")
    del msg["input"]
    with pytest.raises(MalformedMessage, match=r"missing field .input."):
        TaskMessage.from_dict(msg)
    with pytest.raises(MalformedMessage, match="not JSON"):
        parse_task(b"{nope")
    with pytest.raises(MalformedMessage, match="not a JSON object"):
        parse_task(b"[1, 2]")


def test_an_unknown_message_type_is_an_error(validator: jsonschema.Draft202012Validator) -> None:
    bad = {"v": 1, "type": "explode"}
    with pytest.raises(MalformedMessage, match="unknown worker message type"):
        parse_message(bad)
    assert not validator.is_valid(bad)


def test_messages_the_worker_builds_validate_against_the_schema(
    validator: jsonschema.Draft202012Validator,
) -> None:
    ref = AttemptRef("r", "t", 1, "w", "default", "1-0")
    info = WorkerInfo("w", "h", 1, ["default"], 5, 0, "0.1.0", 1, "draining", 0.5)
    built = [
        Started(ref, 1),
        TaskResult(ref, "succeeded", 1, 2, {"a": [1]}),
        TaskResult(ref, "failed", 1, 2, None, TaskError("cancelled", "stop", retryable=False)),
        TaskResult(ref, "failed", 1, 2, None, TaskError("exception", "x", "E", "tb", True, 2.0)),
        Progress("r", "t", 1, "w", 3),
        Progress("r", "t", 1, "w", 3, 0.5, "half"),
        Progress("r", "t", 1, "w", 3, None, "generating", "The moon"),
        Progress("r", "t", 1, "w", 3, None, "generating", usage=Usage(1200, 1, 0.000964)),
        TaskResult(ref, "succeeded", 1, 2, "x", None, Usage(3, 4, 0.5), [{"id": "0"}]),
        TaskResult(ref, "failed", 1, 2, None, TaskError("timeout", "slow"), Usage(1, 0, 0.0)),
        LogLine("r", "t", 1, "w", "warning", "careful", 3),
        Released(ref, "worker shutting down", 3),
        Heartbeat(info, 3),
        WorkerStopped("w", 4),
        Cancel("r", "t", 2),
        Drain("*"),
    ]
    for message in built:
        data = loads(dumps(message.to_dict()))
        validator.validate(data)
        assert parse_message(data).to_dict() == data


def test_agent_task_carries_its_configuration() -> None:
    task = parse_task((EXAMPLES / "task_agent.json").read_bytes())
    agent = task.agent
    assert agent is not None
    assert (agent.name, agent.provider, agent.model) == ("researcher", "openai", "gpt-4o-mini")
    assert agent.extra_fields == ()
    assert agent.max_output_tokens == 512
    assert agent.price is not None
    assert (agent.price.input_per_mtok, agent.price.output_per_mtok) == (0.15, 0.6)
    assert parse_task((EXAMPLES / "task.json").read_bytes()).agent is None


def test_a_traced_task_carries_its_traceparent() -> None:
    task = parse_task((EXAMPLES / "task_traced.json").read_bytes())
    assert task.traceparent == "00-5f2c1ab0e3a94c1d8e7b6a5f4d3c2b1a-9a8b7c6d5e4f3a2b-01"
    assert "traceparent" in task.to_dict()
    # Without tracing the field is absent, and absent it stays when written back.
    plain = parse_task((EXAMPLES / "task.json").read_bytes())
    assert plain.traceparent is None
    assert "traceparent" not in plain.to_dict()
    with pytest.raises(MalformedMessage, match="traceparent"):
        TaskMessage.from_dict(load(EXAMPLES / "task.json") | {"traceparent": 7})


def test_agent_config_ignores_fields_a_newer_orchestrator_adds() -> None:
    # Rejecting them would dead-letter every agent task after an orchestrator upgrade.
    msg = load(EXAMPLES / "task_agent.json")
    msg["agent"]["top_p"] = 0.9
    msg["agent"]["price"]["per_request"] = 1
    agent = TaskMessage.from_dict(msg).agent
    assert agent is not None
    assert agent.model == "gpt-4o-mini"
    assert "top_p" not in agent.to_dict()
    assert agent.extra_fields == ("top_p",)  # named, so the worker can judge them
    minimal = AgentConfig.from_dict({"name": "a", "provider": "mock", "model": "m"})
    assert minimal.to_dict() == {"name": "a", "provider": "mock", "model": "m"}
    assert AgentConfig.from_dict(minimal.to_dict() | {"temperature": None}) == minimal


def test_null_children_mean_none() -> None:
    msg = load(EXAMPLES / "result_agent.json") | {"children": None}
    assert TaskResult.from_dict(msg).children == []


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"usage": {"input_tokens": -1}}, "field `input_tokens`"),
        ({"usage": {"cost_usd": "1"}}, "field `cost_usd`"),
        ({"usage": []}, "field `usage`"),
        ({"children": {"id": "0"}}, "field `children`"),
    ],
)
def test_malformed_usage_or_children_is_named(change: dict[str, Any], reason: str) -> None:
    msg = load(EXAMPLES / "result_agent.json") | change
    with pytest.raises(MalformedMessage, match=reason.replace("`", ".")):
        parse_message(msg)


def test_usage_and_children_are_left_out_when_empty() -> None:
    ref = AttemptRef("r", "t", 1, "w", "default", "1-0")
    out = TaskResult(ref, "succeeded", 1, 2, None).to_dict()
    assert "usage" not in out
    assert "children" not in out
    usage = parse_message(load(EXAMPLES / "result_agent.json") | {"usage": {}})
    assert isinstance(usage, TaskResult)
    assert usage.usage == Usage(0, 0, 0.0)
    progress = parse_message(load(EXAMPLES / "progress.json"))
    assert isinstance(progress, Progress)
    assert progress.text_delta is None
    assert "text_delta" not in progress.to_dict()


def test_progress_may_carry_the_usage_so_far() -> None:
    progress = parse_message(load(EXAMPLES / "progress_usage.json"))
    assert isinstance(progress, Progress)
    assert progress.usage == Usage(1200, 1, 0.000964)
    assert progress.text_delta is None
    assert "usage" not in Progress("r", "t", 1, "w", 3).to_dict()


@pytest.mark.parametrize(
    "forged",
    [
        {"base_url": "http://127.0.0.1:1/v1"},
        {"api_key_env": "DATABASE_URL"},
        {"base_url": None},
    ],
)
def test_the_schema_refuses_an_agent_that_chooses_an_endpoint_or_key(
    forged: dict[str, Any], validator: jsonschema.Draft202012Validator
) -> None:
    msg = load(EXAMPLES / "task_agent.json")
    assert validator.is_valid(msg)
    msg["agent"] |= forged
    assert not validator.is_valid(msg)
    # The parser keeps the names, so the worker can refuse them (`admission`).
    agent = TaskMessage.from_dict(msg).agent
    assert agent is not None
    assert agent.extra_fields == tuple(forged)
    assert set(forged).isdisjoint(agent.to_dict())
