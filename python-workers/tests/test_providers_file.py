"""The operator's providers: the built-in set, the providers file and everything it
refuses, the CLI flag and its environment variable, and the test helper that writes
files for fake servers."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support import DEADLINE_S, REDIS_URL

from apex_worker.admission import is_endpoint_or_credential
from apex_worker.cli import build_parser, config_from_args
from apex_worker.providers import (
    BUILTIN,
    ProvidersFileError,
    ProviderSpec,
    load_providers,
)
from apex_worker.testing.providers_file import fake_providers, write_providers_file

EXE = Path(sys.executable).parent / "apex-worker"


def test_without_a_file_the_builtins_are_exactly_openai_anthropic_and_mock() -> None:
    providers = load_providers(None)
    assert list(providers) == ["anthropic", "mock", "openai"]
    assert providers["openai"] == ProviderSpec(
        "openai", "openai", "https://api.openai.com/v1", "OPENAI_API_KEY"
    )
    assert providers["anthropic"] == ProviderSpec(
        "anthropic", "anthropic", "https://api.anthropic.com", "ANTHROPIC_API_KEY"
    )
    assert providers["mock"] == ProviderSpec("mock", "mock")
    assert not any(spec.allow_private for spec in BUILTIN)


def test_a_file_declares_the_providers_plus_mock(tmp_path: Path) -> None:
    path = write_providers_file(
        tmp_path / "p.json",
        {
            "fast": {"kind": "openai", "base_url": "https://api.groq.com/openai/v1/"},
            "local": {
                "kind": "openai",
                "base_url": "http://127.0.0.1:11434/v1",
                "allow_private": True,
            },
            "claude": {
                "kind": "anthropic",
                "base_url": "https://api.anthropic.com",
                "api_key_env": "ANTHROPIC_API_KEY",
            },
        },
    )
    providers = load_providers(path)
    assert list(providers) == ["claude", "fast", "local", "mock"]  # no built-in openai
    assert providers["fast"] == ProviderSpec("fast", "openai", "https://api.groq.com/openai/v1")
    assert providers["fast"].api_key_env is None  # no key sent
    assert providers["local"].allow_private is True
    assert providers["claude"].api_key_env == "ANTHROPIC_API_KEY"
    assert providers["mock"].kind == "mock"
    # A file may redefine mock (under that name, any kind).
    path.write_text(json.dumps({"providers": {"mock": {"kind": "mock", "allow_private": False}}}))
    assert list(load_providers(path)) == ["mock"]


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"kind": "openai", "base_url": "https://x/v1", "apikey": "k"}, 'unknown field "apikey"'),
        ({"kind": "gemini", "base_url": "https://x"}, 'field "kind" must be'),
        ({"base_url": "https://x"}, 'field "kind" must be'),
        ({"kind": "openai"}, 'field "base_url" is required for kind "openai"'),
        ({"kind": "openai", "base_url": "ftp://x/v1"}, "must start with https:// or http://"),
        ({"kind": "openai", "base_url": "https://x/v1?key=1"}, "must not have a query string"),
        ({"kind": "openai", "base_url": "https://x/v1?"}, "must not have a query string"),
        ({"kind": "openai", "base_url": "https://x/v1#a"}, "must not have a fragment"),
        ({"kind": "openai", "base_url": "https://u:p@x/v1"}, "must not carry user info"),
        ({"kind": "openai", "base_url": "https://x:99999/v1"}, "is not a valid URL"),
        ({"kind": "openai", "base_url": "https:///v1"}, "has no host"),
        ({"kind": "openai", "base_url": "https://x/ v1"}, "must not contain spaces"),
        ({"kind": "openai", "base_url": 7}, 'field "base_url" must be a string'),
        ({"kind": "openai", "base_url": "https://x", "api_key_env": "A-B"}, "api_key_env"),
        ({"kind": "openai", "base_url": "https://x", "allow_private": "yes"}, "allow_private"),
        ({"kind": "mock", "base_url": "https://x"}, 'field "base_url" has no meaning'),
        ({"kind": "mock", "api_key_env": "K"}, 'field "api_key_env" has no meaning'),
        ("openai", "must be an object"),
    ],
)
def test_a_bad_entry_is_named_with_file_provider_and_field(
    tmp_path: Path, entry: Any, problem: str
) -> None:
    path = write_providers_file(tmp_path / "p.json", {"fast": entry})
    with pytest.raises(ProvidersFileError) as caught:
        load_providers(path)
    message = str(caught.value)
    assert message.startswith(f'providers file {path}: provider "fast": ')
    assert problem in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{nope", "not JSON"),
        ("[]", "expected an object"),
        ('{"providers": {}, "default": "x"}', 'unknown field "default"'),
        ('{"provider": {}}', 'unknown field "provider"'),
        ('{"providers": []}', '"providers" must be an object'),
        ('{"providers": {"a b": {"kind": "mock"}}}', "provider name"),
    ],
)
def test_a_bad_file_is_named(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "p.json"
    path.write_text(text)
    with pytest.raises(ProvidersFileError, match=problem):
        load_providers(path)
    with pytest.raises(ProvidersFileError, match="cannot read it"):
        load_providers(tmp_path / "missing.json")


@pytest.mark.parametrize(
    ("field", "refused"),
    [
        ("base_url", True),
        ("api_key_env", True),
        ("api_key", True),
        ("apiKey", True),
        ("APIKEY", True),
        ("x-api-key", True),
        ("Authorization", True),
        ("extra_headers", True),
        ("endpoint", True),
        ("proxy", True),
        ("access_token", True),
        ("client_secret", True),
        ("password", True),
        ("baseURL", True),
        ("host", True),
        ("organization", True),
        ("top_p", False),
        ("max_input_tokens", False),
        ("stop", False),
        ("response_format", False),
        ("seed", False),
    ],
)
def test_which_agent_fields_are_endpoints_or_credentials(field: str, refused: bool) -> None:
    assert is_endpoint_or_credential(field) is refused


def test_the_flag_and_its_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APEX_PROVIDERS_FILE", "/from/env.json")
    monkeypatch.setenv("APEX_MAX_LOG_LINES_PER_ATTEMPT", "10")
    monkeypatch.setenv("APEX_MAX_LOG_BYTES_PER_ATTEMPT", "2048")
    config = config_from_args(build_parser().parse_args([]))
    assert config.providers_file == "/from/env.json"
    assert (config.max_log_lines_per_attempt, config.max_log_bytes_per_attempt) == (10, 2048)
    argv = ["--providers-file", "/flag.json", "--max-log-lines-per-attempt", "3"]
    config = config_from_args(build_parser().parse_args(argv))
    assert (config.providers_file, config.max_log_lines_per_attempt) == ("/flag.json", 3)
    monkeypatch.delenv("APEX_PROVIDERS_FILE")
    monkeypatch.delenv("APEX_MAX_LOG_LINES_PER_ATTEMPT")
    monkeypatch.delenv("APEX_MAX_LOG_BYTES_PER_ATTEMPT")
    config = config_from_args(build_parser().parse_args([]))
    assert config.providers_file is None
    assert (config.max_log_lines_per_attempt, config.max_log_bytes_per_attempt) == (
        1000,
        1024 * 1024,
    )


@pytest.mark.parametrize("via", ["flag", "env"])
async def test_the_worker_refuses_to_start_on_a_bad_file(
    tmp_path: Path, prefix: str, via: str
) -> None:
    path = write_providers_file(
        tmp_path / "providers.json",
        {"fast": {"kind": "openai", "base_url": "https://x/v1", "allowPrivate": True}},
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("APEX_")}
    env |= {"REDIS_URL": REDIS_URL, "APEX_REDIS_PREFIX": prefix}
    flags = ["--providers-file", str(path)] if via == "flag" else []
    if via == "env":
        env["APEX_PROVIDERS_FILE"] = str(path)
    proc = await asyncio.create_subprocess_exec(
        str(EXE), "--burst", *flags, env=env, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), DEADLINE_S)
    assert proc.returncode == 2
    assert stderr.decode() == (
        f'apex-worker: providers file {path}: provider "fast": unknown field "allowPrivate" '
        "(known: kind, base_url, api_key_env, allow_private)\n"
    )


def test_the_helper_writes_a_file_the_worker_loads(tmp_path: Path) -> None:
    path = tmp_path / "fake.json"
    result = subprocess.run(
        [
            *(sys.executable, "-m", "apex_worker.testing.providers_file"),
            *("--port", "4321", "--out", str(path), "--api-key-env", "APEX_TEST_KEY"),
        ],
        check=True,
    )
    assert result.returncode == 0
    assert json.loads(path.read_text()) == {
        "providers": fake_providers(4321, api_key_env="APEX_TEST_KEY")
    }
    providers = load_providers(path)
    assert providers["openai"] == ProviderSpec(
        "openai", "openai", "http://127.0.0.1:4321/v1", "APEX_TEST_KEY", allow_private=True
    )
    assert providers["anthropic"] == ProviderSpec(
        "anthropic", "anthropic", "http://127.0.0.1:4321", "APEX_TEST_KEY", allow_private=True
    )
    assert list(providers) == ["anthropic", "mock", "openai"]
