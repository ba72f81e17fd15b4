"""What a task's agent may ask of this worker: one of the operator's providers, by name,
and nothing about endpoints or credentials.

The orchestrator already sends only the name, but Redis is not trusted: anyone who can
write to it can forge a task. So the worker checks again, before any handler runs, and a
task that names an undeclared provider or carries an endpoint or credential field fails
at once, not retried, with nothing sent anywhere.
"""

from __future__ import annotations

import json
import re

from apex_worker.errors import NoRetry
from apex_worker.protocol import AgentConfig
from apex_worker.providers import Providers, ProviderSpec

# Words that, in an agent field's name, mean it would choose where requests go or what
# credentials they carry. Matched against whole words of the name, so a future
# `max_input_tokens` or `top_p` is ignored as an unknown field should be.
_ENDPOINT_OR_CREDENTIAL = frozenset(
    (
        "url", "uri", "urls", "endpoint", "endpoints", "host", "hostname", "base", "proxy",
        "header", "headers", "env", "environ", "key", "keys", "apikey", "secret", "secrets",
        "token", "password", "passwd", "credential", "credentials", "auth", "authorization",
        "bearer", "cookie", "cookies", "cert", "certificate", "organization", "organisation",
        "org", "project", "address", "addr", "port", "server", "domain", "deployment",
    )
)  # fmt: skip
_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")


class AgentRefused(NoRetry):
    """The task's agent asks for something only the worker's operator decides."""


def admit(agent: AgentConfig, providers: Providers) -> ProviderSpec:
    """The operator's provider the agent names; raises AgentRefused if the agent carries
    an endpoint or credential field or names a provider the operator did not declare."""
    refused = [name for name in agent.extra_fields if is_endpoint_or_credential(name)]
    if refused:
        fields = ", ".join(_shown(name, quote=False) for name in refused)
        verb = "is" if len(refused) == 1 else "are"
        raise AgentRefused(
            f"agent {_shown(agent.name)}: {fields} {verb} set by the worker's operator, "
            "not by a task"
        )
    spec = providers.get(agent.provider)
    if spec is None:
        raise AgentRefused(
            f"agent {_shown(agent.name)} names provider {_shown(agent.provider)}, which this "
            f"worker's operator has not declared (declared: {', '.join(providers)})"
        )
    return spec


def is_endpoint_or_credential(field: str) -> bool:
    """Whether an agent field's name says it is about endpoints or credentials:
    `base_url`, `api_key_env`, `apiKey`, `x-api-key`, `Authorization`…"""
    words = {w.lower() for w in _WORDS.findall(field)}
    return bool(words & _ENDPOINT_OR_CREDENTIAL)


def _shown(text: str, quote: bool = True) -> str:
    """Untrusted text fit for an error message: at most 64 characters, escaped."""
    cut = text[:64] + ("…" if len(text) > 64 else "")
    shown = json.dumps(cut, ensure_ascii=False)
    return shown if quote else shown[1:-1]
