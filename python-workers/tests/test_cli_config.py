"""Flags and environment variables of `apex-worker`: env fills in, flags win."""

from __future__ import annotations

import pytest

from apex_worker import WorkerConfig
from apex_worker.cli import build_parser, config_from_args


def parse(*argv: str) -> WorkerConfig:
    return config_from_args(build_parser().parse_args(list(argv)))


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REDIS_URL", "APEX_REDIS_PREFIX", "APEX_QUEUES", "APEX_CONCURRENCY"):
        monkeypatch.delenv(name, raising=False)
    config = parse()
    assert config.queues == ["default"]
    assert config.concurrency == 200
    assert config.redis_prefix == "apex"
    assert config.worker_id.count("-") >= 2


def test_environment_fills_in_and_flags_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://env:6379")
    monkeypatch.setenv("APEX_REDIS_PREFIX", "envp")
    monkeypatch.setenv("APEX_QUEUES", "a, b,")
    monkeypatch.setenv("APEX_CONCURRENCY", "7")
    monkeypatch.setenv("APEX_BURST", "true")
    monkeypatch.setenv("APEX_LEASE_INTERVAL", "1.5")
    config = parse()
    assert (config.redis_url, config.redis_prefix) == ("redis://env:6379", "envp")
    assert (config.queues, config.concurrency, config.burst) == (["a", "b"], 7, True)
    assert config.lease_interval_s == 1.5
    config = parse("--queue", "x", "--queue", "y", "--concurrency", "3", "--redis-prefix", "f")
    assert (config.queues, config.concurrency, config.redis_prefix) == (["x", "y"], 3, "f")


def test_a_bad_environment_value_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APEX_CONCURRENCY", "lots")
    with pytest.raises(SystemExit, match="APEX_CONCURRENCY"):
        build_parser()


def test_a_redis_password_never_reaches_the_log() -> None:
    from apex_worker.cli import redact

    assert redact("redis://:s3cret-pw@127.0.0.1:6390/0") == "redis://:***@127.0.0.1:6390/0"
    assert redact("redis://apex:s3cret@redis:6379") == "redis://apex:***@redis:6379"
    assert redact("redis://127.0.0.1:6379") == "redis://127.0.0.1:6379"
