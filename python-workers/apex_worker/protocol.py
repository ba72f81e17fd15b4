"""The wire contract, mirrored from `worker-protocol/` (the Rust crate is the source of
truth): Redis key builders (`keys.rs`) and the JSON messages on the streams
(`messages.rs`). Every message class parses from and serialises to exactly the JSON the
Rust side reads and writes; the golden files in `worker-protocol/examples/` pin that.

Parsing follows serde's rules: unknown fields are ignored, optional fields may be absent
or null, and a field of the wrong type makes the whole message malformed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, cast

from apex_worker.codec import loads

PROTOCOL_VERSION = 1
#: The single field of a stream entry that holds the message's JSON text.
MESSAGE_FIELD = "m"
#: Consumer group of the workers on every queue stream.
WORKER_GROUP = "workers"
#: Consumer group of the orchestrator on the results stream.
ORCHESTRATOR_GROUP = "orchestrator"

Outcome: TypeAlias = Literal["succeeded", "failed"]
ErrorKind: TypeAlias = Literal[
    "exception", "timeout", "unknown_handler", "cancelled", "worker_lost", "invalid_output"
]
WorkerState: TypeAlias = Literal["running", "draining"]

_OUTCOMES = frozenset(("succeeded", "failed"))
_ERROR_KINDS = frozenset(
    ("exception", "timeout", "unknown_handler", "cancelled", "worker_lost", "invalid_output")
)
_WORKER_STATES = frozenset(("running", "draining"))
_U32_MAX = 2**32 - 1
_I32_MIN, _I32_MAX = -(2**31), 2**31 - 1
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
_U64_MAX = 2**64 - 1


class Keys:
    """Names of Apex's Redis keys under one prefix, so deployments and test runs can share
    a Redis without seeing each other. An empty prefix means `apex`."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str = "apex") -> None:
        self.prefix = prefix or "apex"

    def queue(self, name: str) -> str:
        return f"{self.prefix}:queue:{name}"

    def results(self) -> str:
        return f"{self.prefix}:results"

    def control(self) -> str:
        return f"{self.prefix}:control"

    def dead_letter(self) -> str:
        return f"{self.prefix}:dead"


def idempotency_key_for(run_id: str, task_id: str, attempt: int) -> str:
    return f"{run_id}:{task_id}:{attempt}"


class MalformedMessage(ValueError):
    """A message that is not valid JSON, has an unknown version or type, or lacks a field.
    Its text is the reason recorded in the dead-letter stream."""


# ---------------------------------------------------------------------------------------
# Field readers: each returns the field's value or raises MalformedMessage naming it.


def _get(obj: dict[str, Any], key: str) -> Any:
    try:
        return obj[key]
    except KeyError:
        raise MalformedMessage(f"missing field `{key}`") from None


def _str(obj: dict[str, Any], key: str) -> str:
    value = _get(obj, key)
    if type(value) is not str:
        raise MalformedMessage(f"field `{key}` must be a string")
    return value


def _opt_str(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is not None and type(value) is not str:
        raise MalformedMessage(f"field `{key}` must be a string or null")
    return value


def _int(obj: dict[str, Any], key: str, lo: int, hi: int, default: int | None = None) -> int:
    value = obj.get(key, default) if default is not None else _get(obj, key)
    if type(value) is not int or not lo <= value <= hi:
        raise MalformedMessage(f"field `{key}` must be an integer in [{lo}, {hi}]")
    return value


def _u32(obj: dict[str, Any], key: str) -> int:
    return _int(obj, key, 0, _U32_MAX)


def _opt_u32(obj: dict[str, Any], key: str) -> int | None:
    return None if obj.get(key) is None else _u32(obj, key)


def _i64(obj: dict[str, Any], key: str) -> int:
    return _int(obj, key, _I64_MIN, _I64_MAX)


def _float(obj: dict[str, Any], key: str) -> float:
    value = _get(obj, key)
    if type(value) is not float and type(value) is not int:
        raise MalformedMessage(f"field `{key}` must be a number")
    return float(value)


def _opt_float(obj: dict[str, Any], key: str) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if type(value) is not float and type(value) is not int:
        raise MalformedMessage(f"field `{key}` must be a number or null")
    return float(value)


def _bool(obj: dict[str, Any], key: str, default: bool) -> bool:
    value = obj.get(key, default)
    if type(value) is not bool:
        raise MalformedMessage(f"field `{key}` must be a boolean")
    return value


def _choice(obj: dict[str, Any], key: str, allowed: frozenset[str]) -> str:
    value = _str(obj, key)
    if value not in allowed:
        raise MalformedMessage(f"field `{key}` has unknown value {value!r}")
    return value


def _str_list(obj: dict[str, Any], key: str, required: bool) -> list[str]:
    value = _get(obj, key) if required else obj.get(key, [])
    if type(value) is not list or any(type(item) is not str for item in value):
        raise MalformedMessage(f"field `{key}` must be a list of strings")
    return cast(list[str], value)


def _object(obj: dict[str, Any], key: str) -> dict[str, Any]:
    value = _get(obj, key)
    if type(value) is not dict:
        raise MalformedMessage(f"field `{key}` must be an object")
    return cast(dict[str, Any], value)


def _check_header(obj: object, expected_type: str | None = None) -> dict[str, Any]:
    if type(obj) is not dict:
        raise MalformedMessage("message is not a JSON object")
    msg = cast(dict[str, Any], obj)
    version = msg.get("v")
    if version != PROTOCOL_VERSION or type(version) is not int:
        raise MalformedMessage(f"unsupported protocol version {version!r}")
    if expected_type is not None and msg.get("type") != expected_type:
        raise MalformedMessage(f"expected a `{expected_type}` message, got {msg.get('type')!r}")
    return msg


# ---------------------------------------------------------------------------------------
# Orchestrator → worker: the task.


@dataclass(slots=True)
class TaskMessage:
    """One attempt of one task of a run, as read from `P:queue:NAME`."""

    run_id: str
    task_id: str
    attempt: int
    handler: str
    input: Any
    queue: str
    idempotency_key: str
    enqueued_at_ms: int
    upstream: dict[str, Any] = field(default_factory=dict)
    timeout_s: float | None = None
    priority: int = 0
    #: The agent that runs it (handler `agent`), resolved by the orchestrator.
    agent: AgentConfig | None = None
    #: W3C trace context whose parent is the attempt's span; only when the orchestrator
    #: exports traces. A malformed one is ignored by the tracer, never fatal.
    traceparent: str | None = None

    @classmethod
    def from_dict(cls, obj: object) -> TaskMessage:
        msg = _check_header(obj, "task")
        if "input" not in msg:
            raise MalformedMessage("missing field `input`")
        upstream = msg.get("upstream", {})
        if type(upstream) is not dict:
            raise MalformedMessage("field `upstream` must be an object")
        return cls(
            run_id=_str(msg, "run_id"),
            task_id=_str(msg, "task_id"),
            attempt=_u32(msg, "attempt"),
            handler=_str(msg, "handler"),
            input=msg["input"],
            queue=_str(msg, "queue"),
            idempotency_key=_str(msg, "idempotency_key"),
            enqueued_at_ms=_i64(msg, "enqueued_at_ms"),
            upstream=upstream,
            timeout_s=_opt_float(msg, "timeout_s"),
            priority=_int(msg, "priority", _I32_MIN, _I32_MAX, default=0),
            agent=None if msg.get("agent") is None else AgentConfig.from_dict(msg["agent"]),
            traceparent=_opt_str(msg, "traceparent"),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "v": PROTOCOL_VERSION,
            "type": "task",
            "run_id": self.run_id,
            "task_id": self.task_id,
            "attempt": self.attempt,
            "handler": self.handler,
            "input": self.input,
            "upstream": self.upstream,
            "queue": self.queue,
        }
        if self.timeout_s is not None:
            out["timeout_s"] = self.timeout_s
        out["idempotency_key"] = self.idempotency_key
        out["priority"] = self.priority
        out["enqueued_at_ms"] = self.enqueued_at_ms
        if self.agent is not None:
            out["agent"] = self.agent.to_dict()
        if self.traceparent is not None:
            out["traceparent"] = self.traceparent
        return out


@dataclass(slots=True, frozen=True)
class Price:
    """USD per million input and output tokens."""

    input_per_mtok: float
    output_per_mtok: float

    @classmethod
    def from_dict(cls, obj: object) -> Price:
        if type(obj) is not dict:
            raise MalformedMessage("field `price` must be an object")
        price = cast(dict[str, Any], obj)
        return cls(_float(price, "input_per_mtok"), _float(price, "output_per_mtok"))

    def to_dict(self) -> dict[str, Any]:
        return {"input_per_mtok": self.input_per_mtok, "output_per_mtok": self.output_per_mtok}


@dataclass(slots=True, frozen=True)
class AgentConfig:
    """A named LLM agent: which of the worker operator's providers it uses (by name),
    which model, how it behaves, what it costs. Endpoints and credentials are never part
    of it: the operator declares them on the worker (`apex_worker.providers`).

    Unknown fields are ignored, so a newer orchestrator can add some; their names are
    kept in `extra_fields` so the worker can refuse an agent that tries to choose an
    endpoint or a key (`apex_worker.admission`).
    """

    name: str
    #: The name of a provider the worker's operator declared (`openai`, `anthropic`,
    #: `mock` on a worker without a providers file).
    provider: str
    model: str
    system_prompt: str | None = None
    temperature: float | None = None
    max_output_tokens: int | None = None
    #: Enforced by the orchestrator; the worker only carries it.
    max_concurrency: int | None = None
    price: Price | None = None
    #: Names of the fields the message had that this worker does not know, sorted.
    extra_fields: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def from_dict(cls, obj: object) -> AgentConfig:
        if type(obj) is not dict:
            raise MalformedMessage("field `agent` must be an object")
        agent = cast(dict[str, Any], obj)
        price = agent.get("price")
        return cls(
            name=_str(agent, "name"),
            provider=_str(agent, "provider"),
            model=_str(agent, "model"),
            system_prompt=_opt_str(agent, "system_prompt"),
            temperature=_opt_float(agent, "temperature"),
            max_output_tokens=_opt_u32(agent, "max_output_tokens"),
            max_concurrency=_opt_u32(agent, "max_concurrency"),
            price=None if price is None else Price.from_dict(price),
            extra_fields=tuple(sorted(set(agent) - _AGENT_FIELDS)),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "provider": self.provider, "model": self.model}
        for key in _AGENT_OPTIONAL:
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.price is not None:
            out["price"] = self.price.to_dict()
        return out


_AGENT_OPTIONAL = ("system_prompt", "temperature", "max_output_tokens", "max_concurrency")
_AGENT_FIELDS = frozenset(("name", "provider", "model", "price", *_AGENT_OPTIONAL))


def decode_json(raw: bytes | str) -> object:
    """The JSON value of an entry's `m` field; raises MalformedMessage if it is not JSON."""
    try:
        value: object = loads(raw)
        return value
    except ValueError as exc:
        raise MalformedMessage(f"not JSON: {exc}") from None


def parse_task(raw: bytes | str) -> TaskMessage:
    """Decodes a task entry's `m` field; raises MalformedMessage with the reason."""
    return TaskMessage.from_dict(decode_json(raw))


# ---------------------------------------------------------------------------------------
# Worker → orchestrator: everything on `P:results`.


@dataclass(slots=True, frozen=True)
class AttemptRef:
    """One attempt of one task and the stream entry it was read from."""

    run_id: str
    task_id: str
    attempt: int
    worker_id: str
    queue: str
    msg_id: str

    @classmethod
    def from_dict(cls, msg: dict[str, Any]) -> AttemptRef:
        return cls(
            run_id=_str(msg, "run_id"),
            task_id=_str(msg, "task_id"),
            attempt=_u32(msg, "attempt"),
            worker_id=_str(msg, "worker_id"),
            queue=_str(msg, "queue"),
            msg_id=_str(msg, "msg_id"),
        )

    def fill(self, out: dict[str, Any]) -> dict[str, Any]:
        """Writes the fields into `out` (serde's `flatten`)."""
        out["run_id"] = self.run_id
        out["task_id"] = self.task_id
        out["attempt"] = self.attempt
        out["worker_id"] = self.worker_id
        out["queue"] = self.queue
        out["msg_id"] = self.msg_id
        return out


@dataclass(slots=True)
class Started:
    attempt: AttemptRef
    at_ms: int

    @classmethod
    def from_dict(cls, msg: dict[str, Any]) -> Started:
        return cls(AttemptRef.from_dict(msg), _i64(msg, "at_ms"))

    def to_dict(self) -> dict[str, Any]:
        out = self.attempt.fill({"v": PROTOCOL_VERSION, "type": "started"})
        out["at_ms"] = self.at_ms
        return out


@dataclass(slots=True)
class TaskError:
    """Why an attempt failed, and what the handler wants done about it."""

    kind: ErrorKind
    message: str
    error_type: str | None = None
    traceback: str | None = None
    retryable: bool = True
    retry_after_s: float | None = None

    @classmethod
    def from_dict(cls, obj: object) -> TaskError:
        if type(obj) is not dict:
            raise MalformedMessage("field `error` must be an object")
        err = cast(dict[str, Any], obj)
        return cls(
            kind=cast(ErrorKind, _choice(err, "kind", _ERROR_KINDS)),
            message=_str(err, "message"),
            error_type=_opt_str(err, "error_type"),
            traceback=_opt_str(err, "traceback"),
            retryable=_bool(err, "retryable", True),
            retry_after_s=_opt_float(err, "retry_after_s"),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.error_type is not None:
            out["error_type"] = self.error_type
        out["message"] = self.message
        if self.traceback is not None:
            out["traceback"] = self.traceback
        out["retryable"] = self.retryable
        if self.retry_after_s is not None:
            out["retry_after_s"] = self.retry_after_s
        return out


@dataclass(slots=True)
class Usage:
    """Tokens and money one attempt used (LLM calls). Every field defaults to 0."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    @classmethod
    def from_dict(cls, obj: object) -> Usage:
        if type(obj) is not dict:
            raise MalformedMessage("field `usage` must be an object")
        usage = cast(dict[str, Any], obj)
        cost = usage.get("cost_usd", 0.0)
        if type(cost) is not float and type(cost) is not int:
            raise MalformedMessage("field `cost_usd` must be a number")
        return cls(
            input_tokens=_int(usage, "input_tokens", 0, _U64_MAX, default=0),
            output_tokens=_int(usage, "output_tokens", 0, _U64_MAX, default=0),
            cost_usd=float(cost),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": float(self.cost_usd),
        }


@dataclass(slots=True)
class TaskResult:
    attempt: AttemptRef
    outcome: Outcome
    started_at_ms: int
    finished_at_ms: int
    output: Any = None
    error: TaskError | None = None
    #: What the attempt spent, succeeded or not; None when it reported nothing.
    usage: Usage | None = None
    #: Tasks to add to the run under this one (dynamic fan-out), in the submission format.
    children: list[Any] = field(default_factory=list)

    @classmethod
    def from_dict(cls, msg: dict[str, Any]) -> TaskResult:
        error = msg.get("error")
        usage = msg.get("usage")
        # `null` reads as none, like an absent field.
        children = msg.get("children") or []
        if type(children) is not list:
            raise MalformedMessage("field `children` must be a list")
        return cls(
            attempt=AttemptRef.from_dict(msg),
            outcome=cast(Outcome, _choice(msg, "outcome", _OUTCOMES)),
            started_at_ms=_i64(msg, "started_at_ms"),
            finished_at_ms=_i64(msg, "finished_at_ms"),
            output=msg.get("output"),
            error=None if error is None else TaskError.from_dict(error),
            usage=None if usage is None else Usage.from_dict(usage),
            children=children,
        )

    def to_dict(self) -> dict[str, Any]:
        out = self.attempt.fill({"v": PROTOCOL_VERSION, "type": "result"})
        out["outcome"] = self.outcome
        out["output"] = self.output
        if self.error is not None:
            out["error"] = self.error.to_dict()
        out["started_at_ms"] = self.started_at_ms
        out["finished_at_ms"] = self.finished_at_ms
        if self.usage is not None:
            out["usage"] = self.usage.to_dict()
        if self.children:
            out["children"] = self.children
        return out


@dataclass(slots=True)
class Progress:
    run_id: str
    task_id: str
    attempt: int
    worker_id: str
    at_ms: int
    progress: float | None = None
    message: str = ""
    #: Text generated since the previous report (streamed LLM tokens).
    text_delta: str | None = None
    #: The attempt's usage so far, sent as soon as a provider states it, so spending is
    #: counted even if the attempt never ends; the result's `usage` supersedes it.
    usage: Usage | None = None

    @classmethod
    def from_dict(cls, msg: dict[str, Any]) -> Progress:
        message = msg.get("message", "")
        if type(message) is not str:
            raise MalformedMessage("field `message` must be a string")
        usage = msg.get("usage")
        return cls(
            run_id=_str(msg, "run_id"),
            task_id=_str(msg, "task_id"),
            attempt=_u32(msg, "attempt"),
            worker_id=_str(msg, "worker_id"),
            at_ms=_i64(msg, "at_ms"),
            progress=_opt_float(msg, "progress"),
            message=message,
            text_delta=_opt_str(msg, "text_delta"),
            usage=None if usage is None else Usage.from_dict(usage),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "v": PROTOCOL_VERSION,
            "type": "progress",
            "run_id": self.run_id,
            "task_id": self.task_id,
            "attempt": self.attempt,
            "worker_id": self.worker_id,
        }
        if self.progress is not None:
            out["progress"] = self.progress
        out["message"] = self.message
        if self.text_delta is not None:
            out["text_delta"] = self.text_delta
        if self.usage is not None:
            out["usage"] = self.usage.to_dict()
        out["at_ms"] = self.at_ms
        return out


@dataclass(slots=True)
class LogLine:
    run_id: str
    task_id: str
    attempt: int
    worker_id: str
    level: str
    message: str
    at_ms: int

    @classmethod
    def from_dict(cls, msg: dict[str, Any]) -> LogLine:
        return cls(
            run_id=_str(msg, "run_id"),
            task_id=_str(msg, "task_id"),
            attempt=_u32(msg, "attempt"),
            worker_id=_str(msg, "worker_id"),
            level=_str(msg, "level"),
            message=_str(msg, "message"),
            at_ms=_i64(msg, "at_ms"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": PROTOCOL_VERSION,
            "type": "log",
            "run_id": self.run_id,
            "task_id": self.task_id,
            "attempt": self.attempt,
            "worker_id": self.worker_id,
            "level": self.level,
            "message": self.message,
            "at_ms": self.at_ms,
        }


@dataclass(slots=True)
class Released:
    attempt: AttemptRef
    reason: str
    at_ms: int

    @classmethod
    def from_dict(cls, msg: dict[str, Any]) -> Released:
        return cls(AttemptRef.from_dict(msg), _str(msg, "reason"), _i64(msg, "at_ms"))

    def to_dict(self) -> dict[str, Any]:
        out = self.attempt.fill({"v": PROTOCOL_VERSION, "type": "released"})
        out["reason"] = self.reason
        out["at_ms"] = self.at_ms
        return out


@dataclass(slots=True)
class WorkerInfo:
    """What a worker says about itself in each heartbeat."""

    id: str
    host: str
    pid: int
    queues: list[str]
    concurrency: int
    in_flight: int
    version: str
    started_at_ms: int
    state: WorkerState
    heartbeat_interval_s: float
    handlers: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, obj: object) -> WorkerInfo:
        if type(obj) is not dict:
            raise MalformedMessage("field `worker` must be an object")
        info = cast(dict[str, Any], obj)
        return cls(
            id=_str(info, "id"),
            host=_str(info, "host"),
            pid=_u32(info, "pid"),
            queues=_str_list(info, "queues", required=True),
            concurrency=_u32(info, "concurrency"),
            in_flight=_u32(info, "in_flight"),
            version=_str(info, "version"),
            started_at_ms=_i64(info, "started_at_ms"),
            state=cast(WorkerState, _choice(info, "state", _WORKER_STATES)),
            heartbeat_interval_s=_float(info, "heartbeat_interval_s"),
            handlers=_str_list(info, "handlers", required=False),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "queues": self.queues,
            "concurrency": self.concurrency,
            "in_flight": self.in_flight,
            "handlers": self.handlers,
            "version": self.version,
            "started_at_ms": self.started_at_ms,
            "state": self.state,
            "heartbeat_interval_s": self.heartbeat_interval_s,
        }


@dataclass(slots=True)
class Heartbeat:
    worker: WorkerInfo
    at_ms: int

    @classmethod
    def from_dict(cls, msg: dict[str, Any]) -> Heartbeat:
        return cls(WorkerInfo.from_dict(_get(msg, "worker")), _i64(msg, "at_ms"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": PROTOCOL_VERSION,
            "type": "heartbeat",
            "worker": self.worker.to_dict(),
            "at_ms": self.at_ms,
        }


@dataclass(slots=True)
class WorkerStopped:
    worker_id: str
    at_ms: int

    @classmethod
    def from_dict(cls, msg: dict[str, Any]) -> WorkerStopped:
        return cls(_str(msg, "worker_id"), _i64(msg, "at_ms"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": PROTOCOL_VERSION,
            "type": "worker_stopped",
            "worker_id": self.worker_id,
            "at_ms": self.at_ms,
        }


WorkerMessage: TypeAlias = (
    Started | TaskResult | Progress | LogLine | Released | Heartbeat | WorkerStopped
)

_WORKER_MESSAGES: dict[str, Any] = {
    "started": Started,
    "result": TaskResult,
    "progress": Progress,
    "log": LogLine,
    "released": Released,
    "heartbeat": Heartbeat,
    "worker_stopped": WorkerStopped,
}


def parse_worker_message(obj: object) -> WorkerMessage:
    msg = _check_header(obj)
    cls = _WORKER_MESSAGES.get(msg.get("type"))  # type: ignore[arg-type]
    if cls is None:
        raise MalformedMessage(f"unknown worker message type {msg.get('type')!r}")
    return cast(WorkerMessage, cls.from_dict(msg))


# ---------------------------------------------------------------------------------------
# Orchestrator → every worker: `P:control`.


@dataclass(slots=True, frozen=True)
class Cancel:
    """Stop this attempt if this worker runs it."""

    run_id: str
    task_id: str
    attempt: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": PROTOCOL_VERSION,
            "type": "cancel",
            "run_id": self.run_id,
            "task_id": self.task_id,
            "attempt": self.attempt,
        }


@dataclass(slots=True, frozen=True)
class Drain:
    """The named worker (every worker for `"*"`) finishes its work and exits."""

    worker_id: str

    def to_dict(self) -> dict[str, Any]:
        return {"v": PROTOCOL_VERSION, "type": "drain", "worker_id": self.worker_id}


ControlMessage: TypeAlias = Cancel | Drain


def parse_control(obj: object) -> ControlMessage:
    msg = _check_header(obj)
    kind = msg.get("type")
    if kind == "cancel":
        return Cancel(_str(msg, "run_id"), _str(msg, "task_id"), _u32(msg, "attempt"))
    if kind == "drain":
        return Drain(_str(msg, "worker_id"))
    raise MalformedMessage(f"unknown control message type {kind!r}")


def parse_message(obj: object) -> TaskMessage | WorkerMessage | ControlMessage:
    """Any message of the protocol, dispatched on its `type`."""
    kind = obj.get("type") if type(obj) is dict else None
    if kind == "task":
        return TaskMessage.from_dict(obj)
    if kind in ("cancel", "drain"):
        return parse_control(obj)
    return parse_worker_message(obj)
