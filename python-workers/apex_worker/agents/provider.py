"""What every provider takes and gives back: a chat request built from the agent's
configuration, the operator's provider and the rendered messages, and the completion
with its token counts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Protocol, TypeAlias

from apex_worker.protocol import AgentConfig
from apex_worker.providers import ProviderSpec

Role: TypeAlias = Literal["system", "user", "assistant"]
#: Receives each piece of the answer as it is generated.
OnText: TypeAlias = Callable[[str], Awaitable[None]]
#: Receives the tokens the provider says it has billed so far, `(input, output)`, as soon
#: as it says so: before the answer is complete, so spending is counted even if the
#: stream then stalls.
OnUsage: TypeAlias = Callable[[int, int], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class ChatRequest:
    agent: AgentConfig
    #: Where the request goes and with which key: the operator's, never the task's.
    provider: ProviderSpec
    #: The agent's system prompt, if it has one.
    system: str | None
    messages: list[Message]
    #: Longest wait for the provider's next bytes (the attempt's timeout, or a default).
    read_timeout_s: float

    def prompt_text(self) -> str:
        """The system prompt and every message, one after the other: what estimates and
        the mock provider read."""
        parts = [self.system] if self.system else []
        parts.extend(m.content for m in self.messages)
        return "\n".join(parts)


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    input_tokens: int
    output_tokens: int
    #: The provider reported no usage; the counts are estimates (`estimate_tokens`).
    estimated: bool = False


class Provider(Protocol):
    async def __call__(
        self, request: ChatRequest, on_text: OnText, on_usage: OnUsage
    ) -> Completion: ...


def estimate_tokens(text: str) -> int:
    """About four characters a token, the usual rule of thumb for English."""
    return len(text) // 4 + 1
