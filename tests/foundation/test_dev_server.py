"""`refit run` on the embedded default keeps its servers: other `refit` commands run beside it
find the embedded PostgreSQL and Redis running and leave them alone; an embedded server that
dies is started again; and a SIGKILLed `refit run` leaves none of its children alive.

One `refit run` for the module (a cold start migrates a fresh database: seconds that each
test need not pay again); the SIGKILL test ends it, so it comes last."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.processes import ROOT, free_port, read_log, start_refit, stop_refit, until

REFIT = str(Path(sys.executable).parent / "refit")


class DevServer:
    def __init__(self, data_dir: Path, log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("REFIT_")}
        self.env.update(
            REFIT_DATA_DIR=str(data_dir),
            REFIT_PORT=str(self.port),
            REFIT_LEDGER_PORT=str(free_port()),
            REFIT_LOG_FORMAT="json",
        )
        self.process: subprocess.Popen | None = None

    async def readyz(self) -> int:
        try:
            async with httpx.AsyncClient(timeout=2) as http:
                return (await http.get(f"http://127.0.0.1:{self.port}/readyz")).status_code
        except httpx.HTTPError:
            return 0

    async def started(self, server: str) -> list[int]:
        """Pids of each start of an embedded server, from the run's log."""
        pids = []
        for raw in (await read_log(self.log_path)).splitlines():
            if raw.startswith("{"):
                line = json.loads(raw)
                if line.get("event") == f"embedded.{server}_started":
                    pids.append(line["pid"])
        return pids

    async def until_ready(self, what: str, timeout: float) -> None:
        assert self.process is not None

        async def ready() -> bool:
            return await self.readyz() == 200

        await until(what, ready, self.process, self.log_path, timeout)

    def command(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [REFIT, *args],
            cwd=ROOT,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )


@pytest.fixture(scope="module")
async def dev_server(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("dev-server")
    server = DevServer(work / "data", work / "run.log")
    server.process = start_refit(["run"], server.env, server.log_path)
    try:
        await server.until_ready("starting on a fresh data directory", timeout=240)
        yield server
    finally:
        await stop_refit(server.process)


@pytest.mark.timeout(300)
async def test_commands_beside_run_leave_its_servers_alone(dev_server: DevServer) -> None:
    postgres, redis = await dev_server.started("postgres"), await dev_server.started("redis")
    commands = [
        (("flags", "list"), ""),
        (("payouts", "reconcile"), ""),
        (("operator", "create", "floor-lead", "--role", "inspector"), "a-long-password-1\n"),
    ]
    for args, stdin in commands:
        done = await asyncio.to_thread(dev_server.command, *args, stdin=stdin)
        assert done.returncode == 0, f"refit {' '.join(args)}: {done.stdout}{done.stderr}"
        # Still ready after each: the command neither stopped nor restarted a server.
        assert await dev_server.readyz() == 200, f"after refit {' '.join(args)}"
    assert await dev_server.started("postgres") == postgres
    assert await dev_server.started("redis") == redis


@pytest.mark.timeout(300)
@pytest.mark.parametrize("server", ["redis", "postgres"])
async def test_a_killed_embedded_server_is_started_again(
    dev_server: DevServer, server: str
) -> None:
    (*_, pid) = await dev_server.started(server)
    os.kill(pid, signal.SIGKILL)
    loop = asyncio.get_running_loop()
    killed_at = loop.time()

    async def restarted() -> bool:
        return (await dev_server.started(server))[-1] != pid

    assert dev_server.process is not None
    await until(
        f"{server} to be started again", restarted, dev_server.process, dev_server.log_path, 10
    )
    await dev_server.until_ready(f"ready again after {server} was killed", timeout=10)
    assert loop.time() - killed_at <= 10


def _descendants(root: int) -> set[int]:
    """Every process below `root`, from /proc (children of children included)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its exit status is left


@pytest.mark.timeout(120)
async def test_sigkill_of_run_leaves_no_child_alive(dev_server: DevServer) -> None:
    assert dev_server.process is not None
    children = _descendants(dev_server.process.pid)
    # The API, the worker, PostgreSQL (and its backends), Redis.
    assert len(children) >= 4, children
    os.kill(dev_server.process.pid, signal.SIGKILL)
    await asyncio.to_thread(dev_server.process.wait)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    # Polled: the kernel's parent-death signals give no event this process could wait on.
    while loop.time() < deadline and any(_alive(pid) for pid in children):  # noqa: ASYNC110
        await asyncio.sleep(0.2)
    assert not [pid for pid in children if _alive(pid)], (await read_log(dev_server.log_path))[
        -3000:
    ]
