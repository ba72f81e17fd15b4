"""The `apex-worker` command as a real process: flags, environment, imports, signals."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from redis.asyncio import Redis
from support import DEADLINE_S, REDIS_URL, Results, add_tasks, task_message

EXE = Path(sys.executable).parent / "apex-worker"


async def start(
    prefix: str, *flags: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> asyncio.subprocess.Process:
    base = {k: v for k, v in os.environ.items() if not k.startswith("APEX_")}
    return await asyncio.create_subprocess_exec(
        str(EXE),
        "--heartbeat-interval",
        "0.5",
        *flags,
        env=base | {"REDIS_URL": REDIS_URL, "APEX_REDIS_PREFIX": prefix} | (env or {}),
        cwd=cwd,
        stderr=asyncio.subprocess.PIPE,
    )


async def exit_code(proc: asyncio.subprocess.Process) -> tuple[int, str]:
    _, stderr = await asyncio.wait_for(proc.communicate(), DEADLINE_S)
    assert proc.returncode is not None
    return proc.returncode, stderr.decode()


async def test_the_command_runs_imported_handlers_from_its_environment(
    r: Redis, prefix: str, tmp_path: Path
) -> None:
    (tmp_path / "mytasks.py").write_text(
        "from apex_worker import handler\n\n"
        "@handler\n"
        "async def shout(input, upstream, ctx):\n"
        "    return input.upper()\n"
    )
    await add_tasks(r, prefix, task_message("a", "shout", "hi", queue="q1"), queue="q1")
    await add_tasks(r, prefix, task_message("b", "echo", 2, queue="q2"), queue="q2")
    proc = await start(
        prefix,
        "--burst",
        "--worker-id",
        "cli-worker-1",
        env={"APEX_QUEUES": "q1,q2", "APEX_IMPORTS": "mytasks", "APEX_CONCURRENCY": "5"},
        cwd=tmp_path,
    )
    code, stderr = await exit_code(proc)
    assert code == 0, stderr
    results = Results(r, prefix)
    await results.until(lambda s: bool(s.of_type("worker_stopped")))
    got = results.results()
    assert (got["a"]["output"], got["b"]["output"]) == ("HI", 2)
    assert {m["worker_id"] for m in got.values()} == {"cli-worker-1"}
    info = results.of_type("heartbeat")[0]["worker"]
    assert (info["queues"], info["concurrency"], info["id"]) == (["q1", "q2"], 5, "cli-worker-1")
    assert "shout" in info["handlers"]
    assert info["pid"] == proc.pid
    assert results.messages[-1] == {
        "v": 1,
        "type": "worker_stopped",
        "worker_id": "cli-worker-1",
        "at_ms": results.messages[-1]["at_ms"],
    }


async def test_sigterm_lets_in_flight_work_finish(r: Redis, prefix: str) -> None:
    await add_tasks(r, prefix, *(task_message(f"t{i}", "sleep", {"seconds": 1}) for i in range(3)))
    results = Results(r, prefix)
    proc = await start(prefix, "--concurrency", "10")
    await results.until(lambda s: len(s.of_type("started")) == 3)
    proc.send_signal(signal.SIGTERM)
    code, stderr = await exit_code(proc)
    assert code == 0, stderr
    await results.until(lambda s: bool(s.of_type("worker_stopped")))
    assert [m["outcome"] for m in results.results().values()] == ["succeeded"] * 3
    assert not results.of_type("released")
    assert results.messages[-1]["type"] == "worker_stopped"


async def test_sigterm_releases_work_that_outlives_the_grace(r: Redis, prefix: str) -> None:
    await add_tasks(r, prefix, task_message("endless", "sleep", {"seconds": 60}))
    results = Results(r, prefix)
    proc = await start(prefix, "--shutdown-grace", "0.3")
    await results.until(lambda s: bool(s.of_type("started")))
    proc.send_signal(signal.SIGTERM)
    code, stderr = await exit_code(proc)
    assert code == 0, stderr
    await results.until(lambda s: bool(s.of_type("worker_stopped")))
    [released] = results.of_type("released")
    assert released["task_id"] == "endless"
    assert not results.of_type("result")
    assert [m["type"] for m in results.messages][-2:] == ["released", "worker_stopped"]


async def test_a_module_that_cannot_be_imported_is_a_clear_error(prefix: str) -> None:
    proc = await start(prefix, "--import", "no_such_module_here", "--burst")
    code, stderr = await exit_code(proc)
    assert code == 1
    assert "no_such_module_here" in stderr


async def test_a_second_signal_stops_without_waiting(r: Redis, prefix: str) -> None:
    await add_tasks(r, prefix, task_message("endless", "sleep", {"seconds": 60}))
    results = Results(r, prefix)
    proc = await start(prefix, "--shutdown-grace", "60")
    await results.until(lambda s: bool(s.of_type("started")))
    proc.send_signal(signal.SIGINT)
    await results.until(lambda s: s.of_type("heartbeat")[-1]["worker"]["state"] == "draining")
    proc.send_signal(signal.SIGINT)
    code, stderr = await exit_code(proc)
    assert code == 0, stderr
    await results.until(lambda s: bool(s.of_type("worker_stopped")))
    assert [m["task_id"] for m in results.of_type("released")] == ["endless"]


async def test_unreachable_redis_is_a_clear_error(prefix: str) -> None:
    proc = await start(prefix, "--redis-url", "redis://127.0.0.1:9", "--burst")
    code, stderr = await exit_code(proc)
    assert code == 1
    assert "cannot reach Redis at redis://127.0.0.1:9" in stderr
