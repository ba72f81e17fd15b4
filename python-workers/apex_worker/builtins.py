"""Handlers every worker has, for demos, tests and benchmarks (DESIGN.md, "Python workers").

| name  | does |
| ----- | ---- |
| noop  | returns null |
| echo  | returns its input |
| sleep | awaits `input.seconds`, returns its input |
| fail  | raises `input.message`; with `input.until_attempt: N` only attempts before N fail |
| sum   | `input.value` (default 0) + the numeric upstream outputs + 1, mod `input.modulus` |
| agent | calls the task's LLM agent (`apex_worker.agents`) |

A malformed input is the caller's mistake, so it fails with `NoRetry`.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from apex_worker.agents import agent
from apex_worker.context import Context
from apex_worker.errors import NoRetry

if TYPE_CHECKING:
    from apex_worker.registry import Registry


class HandlerFailed(RuntimeError):
    """Raised by the `fail` handler, on purpose."""


async def noop(input: Any, upstream: dict[str, Any], ctx: Context) -> None:
    return None


async def echo(input: Any, upstream: dict[str, Any], ctx: Context) -> Any:
    return input


async def sleep(input: Any, upstream: dict[str, Any], ctx: Context) -> Any:
    seconds = _field(input, "seconds", 0)
    if not _is_number(seconds) or seconds < 0:
        raise NoRetry(f"sleep: input.seconds must be a non-negative number, got {seconds!r}")
    await asyncio.sleep(seconds)
    return input


async def fail(input: Any, upstream: dict[str, Any], ctx: Context) -> Any:
    until = _field(input, "until_attempt", None)
    if until is not None and not _is_number(until):
        raise NoRetry(f"fail: input.until_attempt must be a number, got {until!r}")
    if until is not None and ctx.attempt >= until:
        return input
    message = _field(input, "message", None)
    raise HandlerFailed(str(message) if message is not None else "failed as asked")


async def sum_(input: Any, upstream: dict[str, Any], ctx: Context) -> int | float:
    value = _field(input, "value", 0)
    modulus = _field(input, "modulus", None)
    if not _is_number(value):
        raise NoRetry(f"sum: input.value must be a number, got {value!r}")
    if modulus is not None and (not _is_number(modulus) or modulus == 0):
        raise NoRetry(f"sum: input.modulus must be a non-zero number, got {modulus!r}")
    total: int | float = value + 1
    for output in upstream.values():
        if _is_number(output):
            total += output
    return total % modulus if modulus is not None else total


BUILTINS = {
    "noop": noop,
    "echo": echo,
    "sleep": sleep,
    "fail": fail,
    "sum": sum_,
    "agent": agent,
}


def register_builtins(registry: Registry) -> None:
    for name, fn in BUILTINS.items():
        registry.register(name, fn)


def _field(input: Any, key: str, default: Any) -> Any:
    if isinstance(input, dict):
        value = input.get(key, default)
        return default if value is None else value
    return default


def _is_number(value: Any) -> bool:
    return type(value) is int or type(value) is float
