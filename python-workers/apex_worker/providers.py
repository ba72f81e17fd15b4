"""The LLM providers this worker's operator declares: where each one is, which
environment variable holds its key, and whether it may live on a private network.

Tasks pick a provider by name only (`agent.provider`); endpoints and keys are never in a
task, because everything on Redis is untrusted (DESIGN.md, "Trust boundaries"). A task
that could name a URL or an environment variable could make the worker send any of its
secrets anywhere.

The declaration is a JSON file (`apex-worker --providers-file PATH`):

    {"providers": {
        "openai": {"kind": "openai", "base_url": "https://api.openai.com/v1",
                   "api_key_env": "OPENAI_API_KEY"},
        "local":  {"kind": "openai", "base_url": "http://127.0.0.1:11434/v1",
                   "allow_private": true}
    }}

Without a file the worker has exactly `BUILTIN`. With one, the file's entries are the
providers, plus `mock` (it sends nothing anywhere) unless the file defines `mock` itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeAlias, cast
from urllib.parse import urlsplit

Kind: TypeAlias = Literal["openai", "anthropic", "mock"]
KINDS: frozenset[str] = frozenset(("openai", "anthropic", "mock"))

_FIELDS = frozenset(("kind", "base_url", "api_key_env", "allow_private"))
# Names show up in error messages and logs: keep them plain.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


class ProvidersFileError(ValueError):
    """The providers file cannot be used; the text is one line naming the file, the
    provider and the field."""


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """One provider the operator declared."""

    name: str
    kind: Kind
    #: Endpoint root, as the provider's SDK takes it: requests go to
    #: `{base_url}/chat/completions` (openai) or `{base_url}/v1/messages` (anthropic).
    #: None for `mock`.
    base_url: str | None = None
    #: The worker's environment variable holding the key; None sends no key.
    api_key_env: str | None = None
    #: May resolve to loopback, private, link-local… addresses (a local Ollama or vLLM).
    allow_private: bool = False

    @property
    def label(self) -> str:
        """How errors name it: `openai provider "fast"`."""
        return f'{self.kind} provider "{self.name}"'


MOCK = ProviderSpec("mock", "mock")

#: The providers of a worker started without a providers file.
BUILTIN: tuple[ProviderSpec, ...] = (
    ProviderSpec("openai", "openai", "https://api.openai.com/v1", "OPENAI_API_KEY"),
    ProviderSpec("anthropic", "anthropic", "https://api.anthropic.com", "ANTHROPIC_API_KEY"),
    MOCK,
)


class Providers(Mapping[str, ProviderSpec]):
    """The declared providers by name (read-only)."""

    __slots__ = ("_by_name",)

    def __init__(self, specs: Iterable[ProviderSpec]) -> None:
        self._by_name = {spec.name: spec for spec in specs}

    def __getitem__(self, name: str) -> ProviderSpec:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._by_name))

    def __len__(self) -> int:
        return len(self._by_name)

    def describe(self) -> str:
        """One line for the startup log: each name with its kind and endpoint."""
        parts = []
        for spec in self.values():
            where = f" {spec.base_url}" if spec.base_url else ""
            private = " (private allowed)" if spec.allow_private else ""
            parts.append(f"{spec.name}={spec.kind}{where}{private}")
        return ", ".join(parts)


def builtin_providers() -> Providers:
    return Providers(BUILTIN)


def load_providers(path: str | Path | None) -> Providers:
    """The providers declared in the file at `path`, or the built-in ones for None.
    Raises ProvidersFileError on anything it does not understand: a typo in a security
    setting must stop the worker, not be ignored."""
    if path is None:
        return builtin_providers()
    where = f"providers file {path}"
    try:
        raw: Any = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProvidersFileError(f"{where}: cannot read it: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ProvidersFileError(f"{where}: not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ProvidersFileError(f'{where}: expected an object {{"providers": {{NAME: …}}}}')
    extra = sorted(set(raw) - {"providers"})
    if extra:
        raise ProvidersFileError(f'{where}: unknown field "{extra[0]}" (only "providers")')
    entries = raw.get("providers")
    if not isinstance(entries, dict):
        raise ProvidersFileError(f'{where}: "providers" must be an object of NAME: provider')
    specs = [_spec(where, name, entry) for name, entry in entries.items()]
    if "mock" not in entries:
        specs.append(MOCK)
    return Providers(specs)


def _spec(where: str, name: str, entry: Any) -> ProviderSpec:
    if not _NAME.match(name):
        raise ProvidersFileError(
            f"{where}: provider name {json.dumps(name)[:80]} must be 1-64 letters, digits, "
            "'_', '.' or '-', starting with a letter or digit"
        )
    at = f'{where}: provider "{name}"'
    if not isinstance(entry, dict):
        raise ProvidersFileError(f"{at}: must be an object with a kind")
    unknown = sorted(set(entry) - _FIELDS)
    if unknown:
        raise ProvidersFileError(
            f'{at}: unknown field "{unknown[0][:64]}" '
            "(known: kind, base_url, api_key_env, allow_private)"
        )
    kind = entry.get("kind")
    if kind not in KINDS:
        raise ProvidersFileError(f'{at}: field "kind" must be "openai", "anthropic" or "mock"')
    base_url = entry.get("base_url")
    api_key_env = entry.get("api_key_env")
    allow_private = entry.get("allow_private", False)
    if type(allow_private) is not bool:
        raise ProvidersFileError(f'{at}: field "allow_private" must be true or false')
    if kind == "mock":
        for field in ("base_url", "api_key_env"):
            if field in entry:
                raise ProvidersFileError(f'{at}: field "{field}" has no meaning for kind "mock"')
        return ProviderSpec(name, "mock", allow_private=allow_private)
    if base_url is None:
        raise ProvidersFileError(f'{at}: field "base_url" is required for kind "{kind}"')
    if not isinstance(base_url, str):
        raise ProvidersFileError(f'{at}: field "base_url" must be a string')
    problem = base_url_problem(base_url)
    if problem:
        raise ProvidersFileError(f'{at}: field "base_url" {problem}')
    if api_key_env is not None and (
        not isinstance(api_key_env, str) or not _ENV_NAME.match(api_key_env)
    ):
        raise ProvidersFileError(
            f'{at}: field "api_key_env" must name an environment variable (A-Z, 0-9, _)'
        )
    return ProviderSpec(
        name, cast(Kind, kind), base_url.rstrip("/"), api_key_env, allow_private=allow_private
    )


def base_url_problem(url: str) -> str | None:
    """What is wrong with `url` as a provider's endpoint root, or None. Query strings and
    fragments are refused because paths are appended to the URL (`?x=` would swallow
    them), and user info because credentials belong in `api_key_env`."""
    if any(c.isspace() or not c.isprintable() for c in url):
        return "must not contain spaces or control characters"
    if "?" in url:
        return "must not have a query string"
    if "#" in url:
        return "must not have a fragment"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return "must start with https:// or http://"
    if "@" in parts.netloc:
        return "must not carry user info (user:password@); put the key in api_key_env"
    if not parts.hostname:
        return "has no host"
    return None
