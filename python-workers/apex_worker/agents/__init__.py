"""LLM agents: the built-in `agent` handler and the providers it calls.

- `handler`: the `agent` handler itself (prompt → provider → usage → fan-out).
- `prompt`: templates over the task's input and upstream outputs, and the messages.
- `fanout`: splitting an answer into items, and the child tasks for them.
- `pricing`: what tokens cost (the agent's price, `APEX_PRICES`, a default table).
- `usage`: a call's billed tokens, added to the attempt's usage as they are stated.
- `provider`: the request and completion every provider shares.
- `transport`: pooled HTTP clients, server-sent events, errors → retry decisions.
- `destination`: which addresses provider calls may reach (`allow_private`).
- `errors`: `ProviderError`, the retryable provider failure.
- `openai_compat`, `anthropic`, `mock`: one module per provider kind.

A task runs as an agent with `"handler": "agent", "agent": NAME`; the orchestrator
resolves the name and sends the configuration along (`ctx.agent`), and the worker
resolves the agent's provider name against its operator's providers (`ctx.provider`,
`apex_worker.providers`).
"""

from apex_worker.agents.handler import PROVIDER_KINDS, agent

__all__ = ["PROVIDER_KINDS", "agent"]
