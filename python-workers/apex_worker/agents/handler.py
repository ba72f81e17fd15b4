"""The built-in `agent` handler: renders the prompt, calls the agent's provider with the
answer streaming into progress, reports usage and cost, and fans out when asked.

Output: `{"text", "model", "provider", "usage": {input_tokens, output_tokens, cost_usd,
price_source[, estimated]}}`; the result's `usage` carries the same numbers.
"""

from __future__ import annotations

from typing import Any

from apex_worker.agents import anthropic, mock, openai_compat
from apex_worker.agents.fanout import FanOut
from apex_worker.agents.pricing import cost_usd, price_for
from apex_worker.agents.prompt import build_messages
from apex_worker.agents.provider import ChatRequest, Provider
from apex_worker.agents.transport import DEFAULT_READ_TIMEOUT_S
from apex_worker.context import Context
from apex_worker.errors import NoRetry
from apex_worker.spawn import Spawn

PROVIDERS: dict[str, Provider] = {
    "openai": openai_compat.complete,
    "anthropic": anthropic.complete,
    "mock": mock.complete,
}


async def agent(input: Any, upstream: dict[str, Any], ctx: Context) -> Any:
    config = ctx.agent
    if config is None:
        raise NoRetry(
            "the `agent` handler runs tasks that name an agent "
            '(`"agent": NAME` in the task spec); this task names none'
        )
    provider = PROVIDERS.get(config.provider)
    if provider is None:
        known = ", ".join(sorted(PROVIDERS))
        raise NoRetry(f"agent {config.name!r}: unknown provider {config.provider!r} ({known})")
    # Everything that can be wrong with the task is found before any token is spent.
    messages = build_messages(input, upstream)
    fan_out = FanOut.from_input(input, config.name)
    price, price_source = price_for(config)
    request = ChatRequest(
        agent=config,
        system=config.system_prompt,
        messages=messages,
        read_timeout_s=ctx.timeout_s or DEFAULT_READ_TIMEOUT_S,
    )

    async def forward(text: str) -> None:
        await ctx.stream(text, message="generating")

    completion = await provider(request, forward)
    cost = cost_usd(price, completion.input_tokens, completion.output_tokens)
    ctx.report_usage(
        input_tokens=completion.input_tokens,
        output_tokens=completion.output_tokens,
        cost_usd=cost,
    )
    usage: dict[str, Any] = {
        "input_tokens": completion.input_tokens,
        "output_tokens": completion.output_tokens,
        "cost_usd": cost,
        "price_source": price_source,
    }
    if completion.estimated:
        usage["estimated"] = True
    output = {
        "text": completion.text,
        "model": config.model,
        "provider": config.provider,
        "usage": usage,
    }
    if fan_out is None:
        return output
    scope = {"input": input, "upstream": upstream}
    return Spawn(output, children=fan_out.children(completion.text, scope))
