"""The tokens one provider call has billed so far, added to the attempt's usage as the
provider states them, so that an attempt's spending is known before it ends."""

from __future__ import annotations

from apex_worker.agents.pricing import cost_usd
from apex_worker.context import Context
from apex_worker.protocol import Price


class CallUsage:
    """Counts only grow: a provider restating its counts (Anthropic's `message_delta`
    after `message_start`) adds the difference, never the whole again."""

    __slots__ = ("_ctx", "_price", "cost_usd", "input_tokens", "output_tokens")

    def __init__(self, ctx: Context, price: Price | None) -> None:
        self._ctx = ctx
        self._price = price
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost_usd = 0.0

    def update(self, input_tokens: int, output_tokens: int) -> bool:
        """Raises the counts to what the provider now states and adds the growth to the
        attempt's usage; False if nothing grew."""
        new_input = max(self.input_tokens, input_tokens)
        new_output = max(self.output_tokens, output_tokens)
        if (new_input, new_output) == (self.input_tokens, self.output_tokens):
            return False
        new_cost = cost_usd(self._price, new_input, new_output)
        self._ctx.report_usage(
            input_tokens=new_input - self.input_tokens,
            output_tokens=new_output - self.output_tokens,
            cost_usd=max(0.0, new_cost - self.cost_usd),
        )
        self.input_tokens, self.output_tokens, self.cost_usd = new_input, new_output, new_cost
        return True
