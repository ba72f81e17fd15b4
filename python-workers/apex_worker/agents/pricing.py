"""What tokens cost. The first price found wins:

1. the agent's own `price` (in the task's agent configuration);
2. the file named by `APEX_PRICES`: JSON `{model: {"input_per_mtok": …, "output_per_mtok": …}}`;
3. `DEFAULT_PRICES` below.

A model is looked up by its exact name, then without a `vendor/` prefix (OpenRouter's
`openai/gpt-4o-mini`), then by the longest known name it starts with, followed by `-`,
`:` or `@` (`gpt-4o-mini-2024-07-18` → `gpt-4o-mini`). A model found nowhere costs 0,
and its usage says `"price_source": "none"`.
"""

from __future__ import annotations

import json
import os
from typing import Any, Literal, TypeAlias

from apex_worker.errors import NoRetry
from apex_worker.protocol import AgentConfig, Price

PriceSource: TypeAlias = Literal["agent", "APEX_PRICES", "default", "none"]

#: APPROXIMATE list prices in USD per million tokens (input, output), as published by
#: the providers in 2025. They change: set `price` on an agent or point `APEX_PRICES` at
#: a file of your own for numbers you bill by.
DEFAULT_PRICES: dict[str, Price] = {
    # OpenAI
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4.1": Price(2.00, 8.00),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1-nano": Price(0.10, 0.40),
    "o3-mini": Price(1.10, 4.40),
    "o4-mini": Price(1.10, 4.40),
    # Anthropic
    "claude-3-5-haiku": Price(0.80, 4.00),
    "claude-3-5-sonnet": Price(3.00, 15.00),
    "claude-3-7-sonnet": Price(3.00, 15.00),
    "claude-sonnet-4": Price(3.00, 15.00),
    "claude-opus-4": Price(15.00, 75.00),
    "claude-3-haiku": Price(0.25, 1.25),
    # Google (OpenAI-compatible endpoint)
    "gemini-2.0-flash": Price(0.10, 0.40),
    "gemini-1.5-flash": Price(0.075, 0.30),
    # Groq
    "llama-3.1-8b-instant": Price(0.05, 0.08),
    "llama-3.3-70b-versatile": Price(0.59, 0.79),
    # Cohere
    "command-r": Price(0.15, 0.60),
    "command-r-plus": Price(2.50, 10.00),
}

# The parsed APEX_PRICES file, by (path, modification time).
_loaded: tuple[tuple[str, float], dict[str, Price]] | None = None


class PriceFileError(NoRetry, ValueError):
    """APEX_PRICES names a file that cannot be read as a price table."""


def price_for(agent: AgentConfig) -> tuple[Price | None, PriceSource]:
    if agent.price is not None:
        return agent.price, "agent"
    path = os.environ.get("APEX_PRICES", "").strip()
    if path:
        price = lookup(load_prices(path), agent.model)
        if price is not None:
            return price, "APEX_PRICES"
    price = lookup(DEFAULT_PRICES, agent.model)
    return (price, "default") if price is not None else (None, "none")


def cost_usd(price: Price | None, input_tokens: int, output_tokens: int) -> float:
    if price is None:
        return 0.0
    cost = input_tokens * price.input_per_mtok + output_tokens * price.output_per_mtok
    return round(cost / 1_000_000, 12)


def lookup(table: dict[str, Price], model: str) -> Price | None:
    for name in (model, model.rsplit("/", 1)[-1]):
        if name in table:
            return table[name]
    bare = model.rsplit("/", 1)[-1]
    prefixes = [n for n in table if bare.startswith(n) and bare[len(n) : len(n) + 1] in "-:@"]
    return table[max(prefixes, key=len)] if prefixes else None


def load_prices(path: str) -> dict[str, Price]:
    global _loaded
    try:
        stamp = (path, os.stat(path).st_mtime)
        if _loaded is not None and _loaded[0] == stamp:
            return _loaded[1]
        with open(path, encoding="utf-8") as f:
            raw: Any = json.load(f)
    except (OSError, ValueError) as exc:
        raise PriceFileError(f"APEX_PRICES={path}: cannot read the price table: {exc}") from None
    if not isinstance(raw, dict):
        raise PriceFileError(f"APEX_PRICES={path}: expected {{model: {{input_per_mtok, …}}}}")
    table = {}
    for model, entry in raw.items():
        try:
            table[model] = Price(float(entry["input_per_mtok"]), float(entry["output_per_mtok"]))
        except (TypeError, KeyError, ValueError):
            raise PriceFileError(
                f"APEX_PRICES={path}: {model!r} needs numbers input_per_mtok and output_per_mtok"
            ) from None
    _loaded = (stamp, table)
    return table
