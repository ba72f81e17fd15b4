"""From a task's input and its upstream outputs to the messages an agent sends.

Templates: `{{input.KEY}}`, `{{upstream.TASK}}`, `{{upstream.TASK.field}}`, any depth of
dotted path (list items by index), `{{input}}` or `{{upstream}}` alone for the whole
value, and `{{item}}` in a fan-out's prompt. Strings are inserted as they are, anything
else as JSON. Keys may themselves contain dots (spawned tasks are named `PARENT.ID`):
the longest key that matches wins. A path that leads nowhere is the task's mistake, so
it fails with `PromptError` (not retried), naming what exists instead.

Which messages:
- `input.prompt` (a template): one user message;
- `input.messages` (a list of `{role, content}`, contents templated), roles `system`,
  `user` and `assistant`;
- an input that is a string: that string is the prompt;
- neither: the JSON of `{"input": …, "upstream": …}` is the prompt.
"""

from __future__ import annotations

import json
import re
from typing import Any, cast

from apex_worker.agents.provider import Message, Role
from apex_worker.errors import NoRetry

_PLACEHOLDER = re.compile(r"\{\{\s*(input|upstream|item)((?:\.[^.{}\s]+)*)\s*\}\}")
_ROLES = frozenset(("system", "user", "assistant"))
#: Input keys that instruct the agent handler rather than the model.
HANDLER_KEYS = frozenset(("fan_out",))


class PromptError(NoRetry, ValueError):
    """The prompt cannot be built from this input: retrying cannot help."""


def render(template: str, scope: dict[str, Any]) -> str:
    """`template` with each placeholder replaced by its value from `scope`."""

    def replace(match: re.Match[str]) -> str:
        root, path = match.group(1), match.group(2)
        if root not in scope:
            raise PromptError(f"{match.group(0)}: `{root}` is only defined in a fan-out's prompt")
        segments = path[1:].split(".") if path else []
        return as_text(resolve(scope[root], segments, root, match.group(0)))

    return _PLACEHOLDER.sub(replace, template)


def resolve(value: Any, segments: list[str], shown: str, placeholder: str) -> Any:
    i = 0
    while i < len(segments):
        if isinstance(value, dict):
            for j in range(len(segments), i, -1):
                key = ".".join(segments[i:j])
                if key in value:
                    value, shown, i = value[key], f"{shown}.{key}", j
                    break
            else:
                keys = ", ".join(sorted(map(str, value))[:20]) or "none"
                raise PromptError(
                    f"{placeholder}: `{shown}` has no `{segments[i]}` (it has: {keys})"
                )
        elif isinstance(value, list) and segments[i].isdigit():
            index = int(segments[i])
            if index >= len(value):
                raise PromptError(
                    f"{placeholder}: `{shown}` has {len(value)} items, no item {index}"
                )
            value, shown, i = value[index], f"{shown}.{index}", i + 1
        else:
            raise PromptError(
                f"{placeholder}: `{shown}` is {_kind(value)}, so it has no `{segments[i]}`"
            )
    return value


def as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def build_messages(input: Any, upstream: dict[str, Any]) -> list[Message]:
    scope = {"input": input, "upstream": upstream}
    if isinstance(input, str):
        return [Message("user", render(input, scope))]
    if not isinstance(input, dict):
        return [Message("user", as_text({"input": input, "upstream": upstream}))]
    prompt, messages = input.get("prompt"), input.get("messages")
    if prompt is not None and messages is not None:
        raise PromptError("give the agent `input.prompt` or `input.messages`, not both")
    if prompt is not None:
        if not isinstance(prompt, str):
            raise PromptError(f"input.prompt must be a string, not {_kind(prompt)}")
        return [Message("user", render(prompt, scope))]
    if messages is not None:
        return _messages(messages, scope)
    own = {k: v for k, v in input.items() if k not in HANDLER_KEYS}
    return [Message("user", as_text({"input": own, "upstream": upstream}))]


def _messages(messages: Any, scope: dict[str, Any]) -> list[Message]:
    if not isinstance(messages, list) or not messages:
        raise PromptError("input.messages must be a non-empty list of {role, content}")
    out = []
    for n, message in enumerate(messages):
        if not isinstance(message, dict):
            raise PromptError(f"input.messages[{n}] must be an object {{role, content}}")
        role, content = message.get("role"), message.get("content")
        if role not in _ROLES:
            raise PromptError(
                f"input.messages[{n}].role must be one of system, user, assistant; not {role!r}"
            )
        if not isinstance(content, str):
            raise PromptError(f"input.messages[{n}].content must be a string")
        out.append(Message(cast(Role, role), render(content, scope)))
    if all(m.role == "system" for m in out):
        raise PromptError("input.messages needs a user message, not only system ones")
    return out


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"
