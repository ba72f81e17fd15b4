"""Providers files for tests: a worker reaches a fake server the way it reaches any
provider, through a file its "operator" (the test) writes and passes with
`--providers-file` (or `WorkerConfig.providers_file`).

    from apex_worker.testing.providers_file import write_fake_providers_file
    path = write_fake_providers_file(tmp_path / "providers.json", fake.port)
    # {"providers": {
    #    "openai":    {"kind": "openai",    "base_url": "http://127.0.0.1:PORT/v1",
    #                  "allow_private": true},
    #    "anthropic": {"kind": "anthropic", "base_url": "http://127.0.0.1:PORT",
    #                  "allow_private": true}}}

or, from any language:

    python -m apex_worker.testing.providers_file --port PORT --out FILE
        [--api-key-env VAR] [--no-allow-private] [--openai-name N] [--anthropic-name N]

(`python -m apex_worker.testing.fake_providers --providers-file FILE` writes it for the
server it starts.) Agents then name `openai` or `anthropic` as their provider; `mock` is
always there too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def fake_providers(
    port: int,
    *,
    host: str = "127.0.0.1",
    api_key_env: str | None = None,
    allow_private: bool = True,
    openai_name: str = "openai",
    anthropic_name: str = "anthropic",
) -> dict[str, dict[str, Any]]:
    """Two providers on the fake server at `host:port`: one OpenAI-compatible, one
    Anthropic. Without `api_key_env` the worker sends no key."""
    key = {"api_key_env": api_key_env} if api_key_env else {}
    return {
        openai_name: {
            "kind": "openai",
            "base_url": f"http://{host}:{port}/v1",
            "allow_private": allow_private,
            **key,
        },
        anthropic_name: {
            "kind": "anthropic",
            "base_url": f"http://{host}:{port}",
            "allow_private": allow_private,
            **key,
        },
    }


def write_providers_file(path: str | Path, providers: Mapping[str, Mapping[str, Any]]) -> Path:
    """Writes `{"providers": providers}` to `path` (atomically: a worker started at the
    same moment never reads half a file) and returns the path."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps({"providers": providers}, indent=2) + "\n", encoding="utf-8")
    partial.replace(path)
    return path


def write_fake_providers_file(path: str | Path, port: int, **options: Any) -> Path:
    """`write_providers_file` of `fake_providers(port, **options)`."""
    return write_providers_file(path, fake_providers(port, **options))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m apex_worker.testing.providers_file",
        description="Write a providers file naming a fake provider server on loopback.",
    )
    p.add_argument("--port", type=int, required=True, help="the fake server's port")
    p.add_argument("--out", required=True, metavar="FILE", help="where to write the file")
    p.add_argument("--api-key-env", metavar="VAR", help="variable holding the key to send")
    p.add_argument(
        "--no-allow-private",
        dest="allow_private",
        action="store_false",
        help="leave allow_private false (the worker then refuses the loopback server)",
    )
    p.add_argument("--openai-name", default="openai", metavar="NAME")
    p.add_argument("--anthropic-name", default="anthropic", metavar="NAME")
    args = p.parse_args(argv)
    write_fake_providers_file(
        args.out,
        args.port,
        api_key_env=args.api_key_env,
        allow_private=args.allow_private,
        openai_name=args.openai_name,
        anthropic_name=args.anthropic_name,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
