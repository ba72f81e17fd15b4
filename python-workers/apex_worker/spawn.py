"""Dynamic fan-out: a handler returns `Spawn(output, children=[...])` to add tasks to its
run. The children are task specs in the submission format (`id`, `handler`, `input`,
`depends_on`, `agent`, …); their ids and `depends_on` name each other, and the
orchestrator namespaces them under the parent (`PARENT.ID`). A child without
dependencies depends on the parent and receives its output; tasks that depended on the
parent wait for every child too.

    from apex_worker import Spawn, handler

    @handler
    async def split(input, upstream, ctx):
        parts = input["parts"]
        children = [{"id": str(i), "handler": "work", "input": p} for i, p in enumerate(parts)]
        return Spawn({"parts": len(parts)}, children=children)

The worker checks only what it needs to report the result; the orchestrator validates
the children like a submission and fails the parent with the reason if they are wrong.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from apex_worker.errors import NoRetry


class InvalidSpawn(NoRetry, ValueError):
    """The children of a `Spawn` are not task specs; retrying the handler cannot help."""


class Spawn:
    """A handler's output plus the child tasks it adds to the run."""

    __slots__ = ("children", "output")

    def __init__(self, output: Any = None, *, children: Iterable[Mapping[str, Any]] = ()) -> None:
        if isinstance(output, Spawn):
            raise InvalidSpawn("a Spawn's output cannot be another Spawn")
        self.output = output
        self.children: list[dict[str, Any]] = []
        seen: set[str] = set()
        for n, child in enumerate(children):
            if not isinstance(child, Mapping):
                raise InvalidSpawn(f"child {n} must be a task spec (an object), not {child!r}")
            spec = dict(child)
            task_id = spec.get("id")
            if not isinstance(task_id, str) or not task_id:
                raise InvalidSpawn(f"child {n} needs a non-empty string `id`")
            if task_id in seen:
                raise InvalidSpawn(f"two children have the id {task_id!r}")
            if not isinstance(spec.get("handler"), str):
                raise InvalidSpawn(f"child {task_id!r} needs a string `handler`")
            seen.add(task_id)
            self.children.append(spec)

    def __repr__(self) -> str:
        return f"Spawn({self.output!r}, children=<{len(self.children)}>)"
