"""The processes under test: ReFit's API (two workers), its job worker, and the Node peer.

Each is started in its own session (process group), its output in a log file, and recorded
in the caller's `started` list so that `stop_all` ends exactly those, by id, also after an
error or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
# The Node peer's source (bench/node_orders); it runs from a copy under .refit/bench, where
# its node_modules can be written.
PEER_SOURCE = Path(__file__).resolve().parent / "node_orders"
PEER_FILES = ("server.js", "package.json", "package-lock.json")
API_WORKERS = 2
READY_TIMEOUT_SECONDS = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start(
    args: list[str], env: dict[str, str], log: Path, started: list[subprocess.Popen[bytes]]
) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            args,
            env=env,
            cwd=log.parent,  # not the repo: a developer's .env must not configure the bench
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    started.append(process)
    return process


def stop(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM to the process's own group (the API's processes and cluster's children with
    it), then SIGKILL if it has not gone within `timeout`. A group whose leader died on its own may
    still hold its children (the API's processes, cluster's): they get the SIGKILL."""
    if process.poll() is None:
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                return
            try:
                process.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
    if _group_members(process):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def stop_all(started: list[subprocess.Popen[bytes]]) -> None:
    while started:
        stop(started.pop())


async def wait_http(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until `url` answers 200; fails early if the process died."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited; see {log}")
        try:
            with await asyncio.to_thread(urllib.request.urlopen, url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        await asyncio.sleep(0.25)
    raise RuntimeError(f"{url} not ready after {READY_TIMEOUT_SECONDS}s; see {log}")


def _group_members(process: subprocess.Popen[bytes]) -> list[list[str]]:
    """The /proc/<pid>/stat fields (from the state on) of the live processes in the group
    `start()` made `process` the leader of."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name (field 2) may hold spaces: split after its closing bracket.
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[2]) == process.pid and fields[0] != "Z":  # pgrp, not a zombie
            members.append(fields)
    return members


def group_cpu_seconds(process: subprocess.Popen[bytes]) -> float:
    """CPU time (user + system) used so far by the live processes of `process`'s group: the
    server under test and its workers, whatever the load on the rest of the machine. It is a
    stabler cost per request than requests/s on a shared machine."""
    ticks = sum(int(f[11]) + int(f[12]) for f in _group_members(process))  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by `pid` and its children, live and ended: a
    PostgreSQL postmaster and its backends, or a Redis server (the shared servers' side of a
    request)."""
    try:
        own = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    # cutime, cstime: the children it has waited for (a backend whose client left).
    ticks = int(own[13]) + int(own[14])
    pids = [pid]
    try:
        pids += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return 0.0
    for member in pids:
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def refit_env(
    *, database_url: str, redis_url: str, key_prefix: str, secret: str, data_dir: Path, port: int
) -> dict[str, str]:
    """The REFIT_* environment of the processes under test; any REFIT_* of the caller's shell
    (a Shippo key, say) is left out so every run measures the same configuration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFIT_")}
    env.update(
        REFIT_ENV="development",
        REFIT_DATABASE_URL=database_url,
        REFIT_REDIS_URL=redis_url,
        REFIT_REDIS_KEY_PREFIX=key_prefix,
        REFIT_JWT_SECRET=secret,
        REFIT_PUBLIC_URL=f"http://127.0.0.1:{port}",
        REFIT_HOST="127.0.0.1",
        REFIT_PORT=str(port),
        REFIT_LOG_LEVEL="WARNING",
        REFIT_DATA_DIR=str(data_dir),
        REFIT_SHIPPO_API_KEY="",  # the sandbox carrier
        # One seller's token drives each load, far past what a person does: the per-seller
        # limits stay on (their Redis round trip is part of the cost measured) with room for
        # the run. Labels and quotes come from SQL, not these endpoints.
        REFIT_RATE_LIMIT_SELLER_REQUESTS="100000000/minute",
        REFIT_RATE_LIMIT_ORDERS_PER_SELLER="100000000/minute",
        PYTHONUNBUFFERED="1",
    )
    return env


def api_command(port: int, workers: int = API_WORKERS) -> tuple[list[str], str]:
    """`refit api --workers N` (2 unless told) where the CLI has the option, else uvicorn's own
    supervisor over the app factory; and a word on which one it was."""
    refit = str(VENV_BIN / "refit")
    help_text = subprocess.run(
        [refit, "api", "--help"], capture_output=True, text=True, check=False
    ).stdout
    if "--workers" in help_text:
        return [refit, "api", "--workers", str(workers)], "refit api --workers"
    return [
        str(VENV_BIN / "uvicorn"),
        "--factory",
        "refit.app:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
        "--no-access-log",
    ], "uvicorn --workers"


async def start_api(
    env: dict[str, str],
    port: int,
    log: Path,
    started: list[subprocess.Popen[bytes]],
    workers: int = API_WORKERS,
) -> tuple[subprocess.Popen[bytes], str]:
    args, how = api_command(port, workers)
    process = start(args, env, log, started)
    await wait_http(f"http://127.0.0.1:{port}/readyz", process, log)
    return process, how


def start_worker(
    env: dict[str, str], concurrency: int, log: Path, started: list[subprocess.Popen[bytes]]
) -> subprocess.Popen[bytes]:
    return start(
        [str(VENV_BIN / "refit"), "worker"],
        {**env, "REFIT_WORKER_CONCURRENCY": str(concurrency)},
        log,
        started,
    )


def prepare_peer(work_dir: Path) -> Path:
    """A writable copy of the Node peer (bench/node_orders) with its dependencies: the files
    follow the repo on every run; `npm ci` runs when they were never installed or the lock
    file changed."""
    target = work_dir / "node_orders"
    target.mkdir(parents=True, exist_ok=True)
    lock = (PEER_SOURCE / "package-lock.json").read_bytes()
    # The lock last installed, kept inside node_modules: `npm ci` removes node_modules
    # first, so an install cut short leaves no marker and is done again.
    installed = target / "node_modules" / ".installed-lock.json"
    current = installed.read_bytes() if installed.is_file() else None
    for name in PEER_FILES:
        shutil.copy2(PEER_SOURCE / name, target / name)
    if current != lock:
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is missing: the Node peer cannot be installed")
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--silent"], cwd=target, check=True)
        installed.write_bytes(lock)
    return target


async def start_peer(
    peer_dir: Path,
    *,
    database_url: str,
    secret: str,
    port: int,
    log: Path,
    started: list[subprocess.Popen[bytes]],
) -> subprocess.Popen[bytes]:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is missing: the Node peer cannot run")
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PEER_JWT_SECRET": secret,
        "PORT": str(port),
        "WORKERS": "2",
        "POOL": "10",
    }
    process = start([node, str(peer_dir / "server.js")], env, log, started)
    # The peer has no health route: any answer (its 404) means it listens.
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the Node peer exited; see {log}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return process
        except OSError:
            await asyncio.sleep(0.25)
    raise RuntimeError(f"the Node peer is not listening after {READY_TIMEOUT_SECONDS}s")
