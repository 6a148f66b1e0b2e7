"""Real `refit` processes in tests: started in their own process group with their output in a
log file, and stopped the way an orchestrator stops them (SIGTERM, then SIGKILL)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

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
