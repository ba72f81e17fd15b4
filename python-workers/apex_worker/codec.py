"""JSON encoding of the wire messages: orjson when it is installed, the standard library
otherwise. Both produce strict JSON (no NaN), the only format the orchestrator parses."""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - exercised only without the `fast` extra
    orjson = None  # type: ignore[assignment]


class EncodeError(ValueError):
    """A value cannot be written as JSON."""


if orjson is not None:
    _orjson_dumps = orjson.dumps
    _orjson_loads = orjson.loads
    _OrjsonEncodeError = orjson.JSONEncodeError

    def dumps(value: Any) -> bytes:
        try:
            return _orjson_dumps(value)
        except _OrjsonEncodeError as exc:
            raise EncodeError(str(exc)) from exc

    def loads(data: bytes | str) -> Any:
        return _orjson_loads(data)

else:  # pragma: no cover
    _encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))

    def dumps(value: Any) -> bytes:
        try:
            return _encoder.encode(value).encode()
        except (TypeError, ValueError, RecursionError) as exc:
            raise EncodeError(str(exc)) from exc

    def loads(data: bytes | str) -> Any:
        return json.loads(data)


#: Which codec is in use, for the startup log line.
CODEC = "orjson" if orjson is not None else "json"
