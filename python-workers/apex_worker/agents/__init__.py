"""LLM agents: the built-in `agent` handler and the providers it calls.

- `handler`: the `agent` handler itself (prompt → provider → usage → fan-out).
- `prompt`: templates over the task's input and upstream outputs, and the messages.
- `fanout`: splitting an answer into items, and the child tasks for them.
- `pricing`: what tokens cost (the agent's price, `APEX_PRICES`, a default table).
- `provider`: the request and completion every provider shares.
- `transport`: pooled HTTP clients, server-sent events, errors → retry decisions.
- `openai_compat`, `anthropic`, `mock`: one module per provider.

A task runs as an agent with `"handler": "agent", "agent": NAME`; the orchestrator
resolves the name and sends the configuration along (`ctx.agent`).
"""

from apex_worker.agents.handler import PROVIDERS, agent

__all__ = ["PROVIDERS", "agent"]
