"""Fan-out: an agent whose input has `fan_out` splits its answer into items and spawns
one child task per item.

    "fan_out": {
        "agent": "researcher",              # default: the agent that answered
        "prompt": "Research: {{item}}",     # default: "{{item}}"; input/upstream work too
        "max": 8,                           # at most this many children (default 10)
        "collect": {"id": "merge", "handler": "agent", "agent": "writer",
                    "input": {"prompt": "Merge: {{upstream}}"}}   # optional
    }

Items: the answer's elements if it is a JSON array (a ```json fence around it is fine),
else its non-empty lines stripped of list markers (`1.`, `2)`, `(3)`, `-`, `*`, `•`).
Child `i` is `{"id": "<i>", "handler": "agent", "agent": …, "input": {"prompt": …}}`;
`collect` becomes one more child depending on all of them (its `handler` defaults to
`agent`, its `agent` to the one that answered).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from apex_worker.agents.prompt import PromptError, render

DEFAULT_MAX = 10
#: The orchestrator's limit on children of one task.
MAX_CHILDREN = 1000
_MARKER = re.compile(r"^(?:[-*•+]|\d+[.)]|\(\d+\))\s+")
_FENCE = re.compile(r"^```[\w-]*\s*\n(.*?)\n?```$", re.DOTALL)
_KNOWN = frozenset(("agent", "prompt", "max", "collect"))


@dataclass(frozen=True, slots=True)
class FanOut:
    #: The agent of the item tasks.
    agent: str
    prompt: str
    max: int
    collect: dict[str, Any] | None
    #: The agent that answered: the default for `collect`.
    parent_agent: str

    @classmethod
    def from_input(cls, input: Any, default_agent: str) -> FanOut | None:
        """The fan-out the input asks for, if any; a malformed one is a `PromptError`."""
        if not isinstance(input, dict) or input.get("fan_out") is None:
            return None
        spec = input["fan_out"]
        if not isinstance(spec, dict):
            raise PromptError("input.fan_out must be an object")
        unknown = sorted(set(spec) - _KNOWN)
        if unknown:
            raise PromptError(f"input.fan_out has an unknown field {unknown[0]!r}")
        agent = spec.get("agent", default_agent)
        prompt = spec.get("prompt", "{{item}}")
        limit = spec.get("max", DEFAULT_MAX)
        collect = spec.get("collect")
        if not isinstance(agent, str) or not agent:
            raise PromptError("input.fan_out.agent must be an agent's name")
        if not isinstance(prompt, str):
            raise PromptError("input.fan_out.prompt must be a string")
        if type(limit) is not int or not 1 <= limit <= MAX_CHILDREN:
            raise PromptError(f"input.fan_out.max must be an integer in [1, {MAX_CHILDREN}]")
        if collect is not None:
            if not isinstance(collect, dict):
                raise PromptError("input.fan_out.collect must be a task spec (an object)")
            task_id = collect.get("id")
            if not isinstance(task_id, str) or not task_id or task_id.isdigit():
                raise PromptError(
                    "input.fan_out.collect.id must be a string that is not a number "
                    "(numbers name the items)"
                )
        return cls(agent, prompt, limit, collect, default_agent)

    def children(self, answer: str, scope: dict[str, Any]) -> list[dict[str, Any]]:
        """The child tasks for `answer`; `scope` is the parent's input and upstream."""
        children: list[dict[str, Any]] = []
        for i, item in enumerate(split_items(answer)[: self.max]):
            prompt = render(self.prompt, {**scope, "item": item})
            children.append(
                {"id": str(i), "handler": "agent", "agent": self.agent, "input": {"prompt": prompt}}
            )
        if self.collect is not None:
            collect = dict(self.collect)
            collect.setdefault("handler", "agent")
            if collect["handler"] == "agent":
                collect.setdefault("agent", self.parent_agent)
            depends_on = [c["id"] for c in children]
            for extra in collect.get("depends_on") or ():
                if extra not in depends_on:
                    depends_on.append(extra)
            collect["depends_on"] = depends_on
            children.append(collect)
        return children


def split_items(answer: str) -> list[Any]:
    text = answer.strip()
    fenced = _FENCE.match(text)
    if fenced is not None:
        text = fenced.group(1).strip()
    if text.startswith("["):
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if isinstance(value, list):
            return [v for v in value if v is not None and v != ""]
    items = []
    for line in answer.splitlines():
        item = _MARKER.sub("", line.strip(), count=1).strip()
        if item:
            items.append(item)
    return items
