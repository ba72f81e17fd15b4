"""The built-in `agent` handler: renders the prompt, calls the agent's provider with the
answer streaming into progress, reports usage and cost, and fans out when asked.

The provider is the operator's (`ctx.provider`, resolved by the worker from the agent's
provider name); the task chooses neither endpoint nor key.

Output: `{"text", "model", "provider", "usage": {input_tokens, output_tokens, cost_usd,
price_source[, estimated]}}`; the result's `usage` carries the same numbers. Usage the
provider states mid-stream goes out at once as a progress message with `usage`.
"""

from __future__ import annotations

from typing import Any

from apex_worker import telemetry
from apex_worker.agents import anthropic, mock, openai_compat
from apex_worker.agents.fanout import FanOut
from apex_worker.agents.pricing import price_for
from apex_worker.agents.prompt import build_messages
from apex_worker.agents.provider import ChatRequest, Provider
from apex_worker.agents.transport import DEFAULT_READ_TIMEOUT_S
from apex_worker.agents.usage import CallUsage
from apex_worker.context import Context
from apex_worker.errors import NoRetry
from apex_worker.spawn import Spawn

#: The client for each provider kind (`ProviderSpec.kind`).
PROVIDER_KINDS: dict[str, Provider] = {
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
    spec = ctx.provider
    if spec is None:
        # The worker resolves it before the handler runs (`apex_worker.admission`); a
        # context built elsewhere must do the same rather than let the task choose.
        raise NoRetry(f"agent {config.name!r}: no provider was resolved for this attempt")
    provider = PROVIDER_KINDS[spec.kind]
    # Everything that can be wrong with the task is found before any token is spent.
    messages = build_messages(input, upstream)
    fan_out = FanOut.from_input(input, config.name)
    price, price_source = price_for(config)
    request = ChatRequest(
        agent=config,
        provider=spec,
        system=config.system_prompt,
        messages=messages,
        read_timeout_s=ctx.timeout_s or DEFAULT_READ_TIMEOUT_S,
    )
    billed = CallUsage(ctx, price)

    async def forward(text: str) -> None:
        await ctx.stream(text, message="generating")

    async def on_usage(input_tokens: int, output_tokens: int) -> None:
        if billed.update(input_tokens, output_tokens):
            await ctx.publish_usage(message="generating")

    with telemetry.llm_call(config, spec.kind) as call:
        completion = await provider(request, forward, on_usage)
        billed.update(completion.input_tokens, completion.output_tokens)
        call.usage(billed.input_tokens, billed.output_tokens, billed.cost_usd)
    usage: dict[str, Any] = {
        "input_tokens": billed.input_tokens,
        "output_tokens": billed.output_tokens,
        "cost_usd": billed.cost_usd,
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
