"""Real `refit` processes in tests: started in their own process group with their output in a
log file, and stopped the way an orchestrator stops them (SIGTERM, then SIGKILL)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def start_refit(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """`refit ARGS...` (the installed script, as production starts it) from this tree."""
    with log_path.open("wb") as out:
        return subprocess.Popen(
            [str(Path(sys.executable).parent / "refit"), *args],
            cwd=ROOT,
            env={**env, "PYTHONPATH": str(ROOT)},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


async def stop_refit(process: subprocess.Popen, grace_seconds: float = 60) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        await asyncio.to_thread(process.wait, grace_seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


async def exit_status(process: subprocess.Popen, within: float) -> int:
    """The exit status of a process that is to end by itself within `within` seconds; one
    still running then is killed (its whole group) and the wait's TimeoutExpired fails the
    test."""
    try:
        return await asyncio.to_thread(process.wait, within)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def free_port() -> int:
    """A loopback port free right now, for a process the test starts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def read_log(path: Path) -> str:
    return await asyncio.to_thread(path.read_text)


async def until(what: str, check: Any, process: subprocess.Popen, log: Path, timeout: float) -> Any:
    """Poll `check()` until it returns something true (returned), the process ends, or time
    is up; a failure shows the end of the process's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"the process exited while {what}:\n{(await read_log(log))[-4000:]}"
            )
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out {what}:\n{(await read_log(log))[-4000:]}")
