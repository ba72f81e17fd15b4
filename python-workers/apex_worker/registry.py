"""Handlers by name. A worker runs only tasks whose `handler` it has registered.

    from apex_worker import handler

    @handler                      # registered as "summarise"
    async def summarise(input, upstream, ctx): ...

    @handler("web.search")        # registered under an explicit name
    async def search(input, upstream, ctx): ...

Plain `def` handlers are accepted too; the worker runs them in a thread so they cannot
block the event loop.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar, overload

from apex_worker.builtins import register_builtins
from apex_worker.context import Context

HandlerFn: TypeAlias = Callable[[Any, dict[str, Any], Context], Awaitable[Any] | Any]
F = TypeVar("F", bound=HandlerFn)


@dataclass(frozen=True, slots=True)
class Handler:
    name: str
    fn: HandlerFn
    #: Coroutine functions run on the loop; others in a thread.
    is_async: bool


class Registry:
    """A set of named handlers. The module-level `handler` decorator fills the default
    registry; tests build their own to stay isolated."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def register(self, name: str, fn: HandlerFn) -> Handler:
        if not name:
            raise ValueError("a handler name must not be empty")
        _check_signature(name, fn)
        previous = self._handlers.get(name)
        # Re-registering the same function is harmless (a module imported twice); two
        # different functions under one name would make results depend on import order.
        if previous is not None and not _same_function(previous.fn, fn):
            raise ValueError(f"handler {name!r} is already registered by {previous.fn!r}")
        entry = Handler(name, fn, inspect.iscoroutinefunction(fn))
        self._handlers[name] = entry
        return entry

    def get(self, name: str) -> Handler | None:
        return self._handlers.get(name)

    def names(self) -> list[str]:
        return sorted(self._handlers)

    def __contains__(self, name: object) -> bool:
        return name in self._handlers

    def __iter__(self) -> Iterator[Handler]:
        return iter(self._handlers.values())

    def __len__(self) -> int:
        return len(self._handlers)

    @overload
    def handler(self, name_or_fn: F) -> F: ...
    @overload
    def handler(self, name_or_fn: str | None = None) -> Callable[[F], F]: ...

    def handler(self, name_or_fn: str | F | None = None) -> F | Callable[[F], F]:
        """Decorator: `@registry.handler`, `@registry.handler("name")`."""
        if callable(name_or_fn):
            fn = name_or_fn
            self.register(fn.__name__, fn)
            return fn

        def decorate(fn: F) -> F:
            self.register(name_or_fn or fn.__name__, fn)
            return fn

        return decorate


def _check_signature(name: str, fn: HandlerFn) -> None:
    try:
        inspect.signature(fn).bind(None, {}, None)
    except TypeError:
        raise TypeError(
            f"handler {name!r} must accept three arguments (input, upstream, ctx)"
        ) from None
    except ValueError:  # builtins without a signature: trust them
        pass


def _same_function(a: HandlerFn, b: HandlerFn) -> bool:
    if a is b:
        return True
    return (getattr(a, "__module__", None), getattr(a, "__qualname__", None)) == (
        getattr(b, "__module__", None),
        getattr(b, "__qualname__", None),
    )


#: The registry `apex-worker` serves: the built-ins plus whatever `--import` registers.
default_registry = Registry()
register_builtins(default_registry)
handler = default_registry.handler
