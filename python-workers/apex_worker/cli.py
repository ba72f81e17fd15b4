"""The `apex-worker` command. Every flag has an environment variable behind it (the
project-wide names from DESIGN.md, "Configuration"); a flag wins over its variable."""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from redis.exceptions import ConnectionError as RedisConnectionError

from apex_worker import telemetry
from apex_worker.codec import CODEC
from apex_worker.config import WorkerConfig
from apex_worker.execute import threads_running
from apex_worker.providers import ProvidersFileError
from apex_worker.registry import default_registry
from apex_worker.version import __version__
from apex_worker.worker import Worker

log = logging.getLogger("apex_worker")

_TRUE = {"1", "true", "yes", "on"}


def _env(name: str, convert: Callable[[str], Any], default: Any) -> Any:
    """The variable's value converted, or `default` when unset or empty."""
    raw = os.environ.get(name, "")
    if raw == "":
        return default
    try:
        return convert(raw)
    except ValueError:
        raise SystemExit(f"apex-worker: invalid value for {name}: {raw!r}") from None


def _csv(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


def build_parser() -> argparse.ArgumentParser:
    defaults = WorkerConfig(worker_id="")
    p = argparse.ArgumentParser(
        prog="apex-worker",
        description="Run Apex tasks from Redis Streams with asyncio.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--queue",
        dest="queues",
        action="append",
        metavar="NAME",
        help="queue to serve; repeat for several [env APEX_QUEUES, comma list]",
        default=None,
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=_env("APEX_CONCURRENCY", int, defaults.concurrency),
        help="attempts run at once [env APEX_CONCURRENCY]",
    )
    p.add_argument(
        "--import",
        dest="imports",
        action="append",
        metavar="MODULE",
        default=None,
        help="module whose @handler functions to register; repeat for several "
        "[env APEX_IMPORTS, comma list]",
    )
    p.add_argument(
        "--redis-url",
        default=_env("REDIS_URL", str, defaults.redis_url),
        help="[env REDIS_URL]",
    )
    p.add_argument(
        "--redis-prefix",
        default=_env("APEX_REDIS_PREFIX", str, defaults.redis_prefix),
        help="namespace of every Redis key [env APEX_REDIS_PREFIX]",
    )
    p.add_argument(
        "--worker-id",
        default=_env("APEX_WORKER_ID", str, None),
        help="unique id, also the consumer name (default: HOST-PID-RANDOM) [env APEX_WORKER_ID]",
    )
    p.add_argument(
        "--heartbeat-interval",
        type=float,
        metavar="SECONDS",
        default=_env("APEX_HEARTBEAT_INTERVAL", float, defaults.heartbeat_interval_s),
        help="[env APEX_HEARTBEAT_INTERVAL]",
    )
    p.add_argument(
        "--lease-interval",
        type=float,
        metavar="SECONDS",
        default=_env("APEX_LEASE_INTERVAL", float, defaults.lease_interval_s),
        help="how often in-flight entries are re-claimed [env APEX_LEASE_INTERVAL]",
    )
    p.add_argument(
        "--shutdown-grace",
        type=float,
        metavar="SECONDS",
        default=_env("APEX_SHUTDOWN_GRACE", float, defaults.shutdown_grace_s),
        help="on SIGTERM, time in-flight attempts get to finish before they are "
        "released [env APEX_SHUTDOWN_GRACE]",
    )
    p.add_argument(
        "--max-output-bytes",
        type=int,
        metavar="BYTES",
        default=_env("APEX_MAX_OUTPUT_BYTES", int, defaults.max_output_bytes),
        help="larger results fail as invalid_output [env APEX_MAX_OUTPUT_BYTES]",
    )
    p.add_argument(
        "--providers-file",
        metavar="PATH",
        default=_env("APEX_PROVIDERS_FILE", str, None),
        help="JSON file declaring the LLM providers agents may use: "
        '{"providers": {NAME: {"kind", "base_url", "api_key_env", "allow_private"}}} '
        "(default: openai, anthropic and mock) [env APEX_PROVIDERS_FILE]",
    )
    p.add_argument(
        "--max-log-lines-per-attempt",
        type=int,
        metavar="N",
        default=_env("APEX_MAX_LOG_LINES_PER_ATTEMPT", int, defaults.max_log_lines_per_attempt),
        help="log lines one attempt may send; the rest are counted in one summary line "
        "[env APEX_MAX_LOG_LINES_PER_ATTEMPT]",
    )
    p.add_argument(
        "--max-log-bytes-per-attempt",
        type=int,
        metavar="BYTES",
        default=_env("APEX_MAX_LOG_BYTES_PER_ATTEMPT", int, defaults.max_log_bytes_per_attempt),
        help="bytes of log one attempt may send [env APEX_MAX_LOG_BYTES_PER_ATTEMPT]",
    )
    p.add_argument(
        "--burst",
        action="store_true",
        default=_env("APEX_BURST", lambda v: v.lower() in _TRUE, False),
        help="exit once the queues are empty and nothing runs [env APEX_BURST]",
    )
    p.add_argument(
        "--log-level",
        default=_env("APEX_LOG_LEVEL", str, "info"),
        choices=["debug", "info", "warning", "error"],
        help="[env APEX_LOG_LEVEL]",
    )
    p.add_argument("--version", action="version", version=f"apex-worker {__version__}")
    return p


def config_from_args(args: argparse.Namespace) -> WorkerConfig:
    queues = args.queues or _env("APEX_QUEUES", _csv, None) or ["default"]
    config = WorkerConfig(
        queues=queues,
        concurrency=args.concurrency,
        redis_url=args.redis_url,
        redis_prefix=args.redis_prefix,
        heartbeat_interval_s=args.heartbeat_interval,
        lease_interval_s=args.lease_interval,
        shutdown_grace_s=args.shutdown_grace,
        max_output_bytes=args.max_output_bytes,
        burst=args.burst,
        providers_file=args.providers_file,
        max_log_lines_per_attempt=args.max_log_lines_per_attempt,
        max_log_bytes_per_attempt=args.max_log_bytes_per_attempt,
    )
    if args.worker_id:
        config.worker_id = args.worker_id
    return config


def import_handlers(modules: Sequence[str]) -> None:
    """Imports each module so its `@handler` decorators run. The working directory is on
    the path, so `--import tasks` finds ./tasks.py as it would for `python -m`."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in modules:
        importlib.import_module(name)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    modules = args.imports or _env("APEX_IMPORTS", _csv, [])
    try:
        import_handlers(modules)
    except Exception:
        log.exception("cannot import handler modules %s", modules)
        return 1
    try:
        config = config_from_args(args)
        worker = Worker(config, default_registry)
    except ProvidersFileError as exc:
        # One line, naming the file, the provider and the field: a worker must not start
        # with providers other than the ones its operator meant.
        print(f"apex-worker: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        parser.error(str(exc))
    try:
        _run(worker)
    except (RedisConnectionError, OSError) as exc:
        log.error("cannot reach Redis at %s: %s", redact(config.redis_url), exc)
        return 1
    except RuntimeError:
        return 1
    return 0


def redact(url: str) -> str:
    """`url` with its password hidden: a worker's logs go where its secrets must not."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


#: Allocations between young collections (CPython's default is 700). A wide burst of
#: attempts (500 starting at once) allocates tens of thousands of objects that live as
#: long as their attempt; at 700 each is traversed again and again while it is young.
_GC_YOUNG_THRESHOLD = 10_000


def _tune_gc() -> None:
    """Keeps the cyclic collector out of the way of a burst of attempts. Everything
    imported by now (handlers, libraries: ~50,000 objects) lives as long as the process,
    so it is moved out of the collector's sight (`gc.freeze`): otherwise every full
    collection walks it all, a ~25 ms stall of the event loop that lands in the middle
    of a wave of attempts starting or finishing. Cycles made later are still collected."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(_GC_YOUNG_THRESHOLD, older, oldest)


def _run(worker: Worker) -> None:
    _tune_gc()
    try:
        import uvloop
    except ImportError:
        loop_factory = None
        loop_name = "asyncio"
    else:
        loop_factory = uvloop.new_event_loop
        loop_name = "uvloop"
    log.info("apex-worker %s on %s with %s", __version__, loop_name, CODEC)
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        stuck = runner.run(_serve(worker)) + threads_running()
        # The spans of the last attempts, before the process exits (no-op untraced).
        telemetry.shutdown()
        if stuck:
            # Everything is reported (released, worker_stopped); closing the loop would
            # wait for these, possibly for ever.
            log.warning("exiting with %d handlers or tasks still running", stuck)
            logging.shutdown()
            os._exit(0)


async def _serve(worker: Worker) -> int:
    """Runs the worker with signal handling; returns how many tasks outlived it."""
    loop = asyncio.get_running_loop()
    signals_seen = 0

    def on_signal(signum: int) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen == 1:
            log.info(
                "%s: finishing in-flight work (signal again to stop now)",
                signal.Signals(signum).name,
            )
            worker.stop()
        else:
            worker.stop(grace_s=0)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    await worker.run()
    return len(asyncio.all_tasks() - {asyncio.current_task()})
