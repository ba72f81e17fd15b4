"""The `mock` provider: a deterministic stand-in for a model, offline, for demos, tests
and benchmarks. No network, no key, no cost.

- The answer is a function of the model name and the prompt only (SHAKE-256 of both):
  the same on every run and every machine.
- When the instruction asks for a list or a plan (the words "list" or "plan" before the
  prompt's first colon, full stop or line break), the answer is a numbered list of three
  steps about the prompt's subject (the text after that colon), so fan-out demos fan out.
  Otherwise it is two sentences of plausible words.
- It streams word by word, 20 ms a word; a model name containing "fast" streams without
  delay.
- Usage: input tokens = len(prompt) // 4 + 1 (the prompt being the system prompt and the
  messages joined by line breaks); output tokens = the words of the answer. The agent's
  `max_output_tokens` caps the words.
"""

from __future__ import annotations

import asyncio
import hashlib
import re

from apex_worker.agents.provider import ChatRequest, Completion, OnText, OnUsage

WORD_DELAY_S = 0.02
_ASKS_FOR_LIST = re.compile(r"\b(lists?|plans?)\b", re.IGNORECASE)
_INSTRUCTION_END = re.compile(r"[:.\n]")

_VERBS = ("Survey", "Measure", "Compare", "Explain", "Map", "Model", "Review", "Test")
_ADJECTIVES = ("basic", "hidden", "measurable", "historical", "competing", "local", "daily")
_NOUNS = ("forces", "evidence", "mechanisms", "records", "effects", "cycles", "limits", "causes")
_WORDS = (
    "the", "data", "suggest", "a", "clear", "pattern", "in", "which", "each", "factor",
    "shapes", "outcome", "over", "time", "while", "several", "sources", "agree", "on",
    "main", "cause", "and", "differ", "details", "further", "work", "should", "check",
    "these", "findings", "against", "new", "observations", "because", "effect", "varies",
    "with", "place", "season", "model", "explains", "most", "of", "what", "we", "see",
    "but", "not", "all", "strong", "weak", "signal", "appears", "across", "studies",
    "careful", "review", "shows", "small", "errors", "matter", "less", "than", "expected",
)  # fmt: skip


async def complete(request: ChatRequest, on_text: OnText, on_usage: OnUsage) -> Completion:
    # Nothing is billed, so there is no usage to report before the answer (`on_usage`).
    prompt = request.prompt_text()
    model = request.agent.model
    stream = hashlib.shake_256(f"{model}\n{prompt}".encode()).digest(256)
    user = next((m.content for m in reversed(request.messages) if m.role == "user"), prompt)
    text = answer(user, stream)
    pieces = re.findall(r"\S+\s*", text)
    limit = request.agent.max_output_tokens
    if limit is not None and len(pieces) > limit:
        pieces = pieces[:limit]
        text = "".join(pieces).rstrip()
    delay = 0.0 if "fast" in model else WORD_DELAY_S
    for piece in pieces:
        await on_text(piece)
        await asyncio.sleep(delay)
    return Completion(text, len(prompt) // 4 + 1, len(pieces))


def answer(instruction: str, stream: bytes) -> str:
    """The mock's answer to `instruction` (the last user message), its choices drawn
    from the bytes of `stream`."""
    end = _INSTRUCTION_END.search(instruction)
    head = instruction if end is None else instruction[: end.start()]
    if _ASKS_FOR_LIST.search(head):
        subject = "" if end is None else instruction[end.end() :].strip()
        subject = subject.split("\n", 1)[0].strip()[:80]
        return numbered_list(subject or "the question", stream)
    return sentences(stream)


def numbered_list(subject: str, stream: bytes) -> str:
    steps = []
    for i in range(3):
        verb, adjective, noun = stream[3 * i], stream[3 * i + 1], stream[3 * i + 2]
        step = (
            f"{_VERBS[verb % len(_VERBS)]} the {_ADJECTIVES[adjective % len(_ADJECTIVES)]} "
            f"{_NOUNS[noun % len(_NOUNS)]} of {subject}"
        )
        steps.append(f"{i + 1}. {step}")
    return "\n".join(steps)


def sentences(stream: bytes) -> str:
    out = []
    at = 2
    for length in (8 + stream[0] % 7, 6 + stream[1] % 7):
        words = [_WORDS[b % len(_WORDS)] for b in stream[at : at + length]]
        at += length
        out.append(" ".join(words).capitalize() + ".")
    return " ".join(out)
