"""`refit api --workers 2`, the real command: two processes on one port, each answering health,
readiness and a signed-in request, /metrics counting both, and SIGTERM stopping all of it
gracefully; a process that dies is started again, and one that cannot start stops the command
with exit 3 instead of being started again and again."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.processes import exit_status, start_refit
from tests.processes import free_port as _free_port
from tests.processes import read_log as _read
from tests.processes import until as _until

ROOT = Path(__file__).resolve().parents[2]


def _log(path: Path) -> list[dict[str, Any]]:
    lines = []
    for raw in path.read_text().splitlines():
        try:
            lines.append(json.loads(raw))
        except ValueError:
            pass  # a line from something that does not log JSON (a library's print)
    return lines


def _events(lines: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("event") == event]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _command_env(data_dir: Path, port: int, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REFIT_", "PROMETHEUS_"))}
    env.update(
        REFIT_ENV="test",
        REFIT_DATA_DIR=str(data_dir),
        REFIT_PORT=str(port),
        REFIT_LOG_FORMAT="json",
        PYTHONPATH=str(ROOT),  # this tree's code, whatever the script was installed from
        **settings,
    )
    return env


@pytest.mark.timeout(300)
async def test_refit_api_with_two_processes_serves_and_stops_on_sigterm(settings, make_user):
    seller = await make_user()
    port = _free_port()
    data_dir = ROOT / ".refit" / f"api-{uuid.uuid4().hex[:8]}"
    log_path = data_dir.with_suffix(".log")
    data_dir.parent.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REFIT_", "PROMETHEUS_"))}
    env.update(
        REFIT_ENV="test",
        REFIT_DATABASE_URL=settings.database_url,
        # No REFIT_REDIS_URL: the command starts the embedded Redis and exports its URL. The
        # two processes can only reach it through their environment, so a ready answer from
        # each shows they saw it.
        REFIT_DATA_DIR=str(data_dir),
        REFIT_PORT=str(port),
        REFIT_PUBLIC_URL=settings.public_url,  # the seller's token was issued for it
        REFIT_LOG_FORMAT="json",
        PYTHONPATH=str(ROOT),  # this tree's code, whatever the script was installed from
    )
    base = f"http://127.0.0.1:{port}"
    # The installed `refit` script, as production and the benchmark start it.
    process = start_refit(["api", "--workers", "2"], env, log_path)
    try:
        # A fresh connection per request, so the kernel may hand each to either process.
        limits = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=base, timeout=10, limits=limits) as http:

            async def ready() -> bool:
                try:
                    return (await http.get("/readyz")).status_code == 200
                except httpx.HTTPError:
                    return False

            await _until("waiting for /readyz", ready, process, log_path, timeout=180)

            async def both_started() -> list[int]:
                lines = await asyncio.to_thread(_log, log_path)
                pids = [line["pid"] for line in _events(lines, "refit.api_process_started")]
                return pids if len(pids) == 2 else []

            workers = await _until("waiting for 2 processes", both_started, process, log_path, 180)
            assert process.pid not in workers

            wanted = {
                "/healthz": {},
                "/readyz": {},
                "/api/orders": seller.headers,  # signed in: token, revocation check, RLS read
            }
            sent: dict[str, int] = defaultdict(int)

            async def each_served_each() -> bool:
                answers = await asyncio.gather(
                    *(
                        http.get(path, headers=headers)
                        for path, headers in wanted.items()
                        for _ in range(4)
                    )
                )
                for response in answers:
                    assert response.status_code == 200, (response.url, response.text)
                    sent[response.url.path] += 1
                served = {
                    (line["pid"], line["route"])
                    for line in await asyncio.to_thread(_log, log_path)
                    if line.get("event") == "http.request" and line["status"] == 200
                }
                return all((pid, route) in served for pid in workers for route in wanted)

            await _until(
                "waiting for each process to serve", each_served_each, process, log_path, 120
            )

            # /metrics, from whichever process answers, counts the requests of both.
            async def healthz_counted() -> bool:
                text = (await http.get("/metrics")).text
                found = re.search(
                    r'^refit_http_requests_total\{method="GET",route="/healthz",status="200"\} '
                    r"(\S+)$",
                    text,
                    re.MULTILINE,
                )
                return found is not None and float(found.group(1)) == sent["/healthz"]

            await _until(
                "waiting for /metrics to count both", healthz_counted, process, log_path, 30
            )

        os.kill(process.pid, signal.SIGTERM)  # what an orchestrator sends, to the parent only
        assert await asyncio.to_thread(process.wait, 60) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        output = await _read(log_path)
        shutil.rmtree(data_dir, ignore_errors=True)
        log_path.unlink(missing_ok=True)

    # Each process finished its lifespan (connections closed), and none outlived the parent.
    lines = [json.loads(raw) for raw in output.splitlines() if raw.startswith("{")]
    assert [line["signal"] for line in _events(lines, "refit.stopping")] == ["SIGTERM"]
    stopped = [line["pid"] for line in _events(lines, "refit.api_process_stopped")]
    assert sorted(stopped) == sorted(workers), output[-4000:]
    assert not [pid for pid in workers if _alive(pid)]
    # The embedded Redis the command started (the one the processes used) stopped with it.
    (redis_socket,) = [line["socket"] for line in _events(lines, "embedded.redis_started")]
    assert not await asyncio.to_thread(os.path.exists, redis_socket)


@pytest.mark.timeout(300)
async def test_a_killed_api_process_is_started_again(settings, tmp_path):
    port = _free_port()
    log_path = tmp_path / "api.log"
    env = _command_env(tmp_path / "data", port, REFIT_DATABASE_URL=settings.database_url)
    process = start_refit(["api", "--workers", "2"], env, log_path)

    async def started() -> list[int]:
        lines = await asyncio.to_thread(_log, log_path)
        return [line["pid"] for line in _events(lines, "refit.api_process_started")]

    try:
        first = await _until(
            "waiting for 2 processes",
            lambda: _at_least(started, 2),
            process,
            log_path,
            180,
        )
        victim, survivor = first[0], first[1]
        os.kill(victim, signal.SIGKILL)  # the OOM killer, or a segfault in a C extension
        pids = await _until(
            "waiting for a third process", lambda: _at_least(started, 3), process, log_path, 180
        )
        (replacement,) = set(pids) - {victim, survivor}
        # The port never stopped being served, and the new process serves it too.
        limits = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=10, limits=limits) as http:

            async def replacement_served() -> bool:
                answers = await asyncio.gather(
                    *(http.get(f"http://127.0.0.1:{port}/healthz") for _ in range(8))
                )
                assert [a.status_code for a in answers] == [200] * 8
                return any(
                    line.get("pid") == replacement
                    for line in _events(await asyncio.to_thread(_log, log_path), "http.request")
                )

            await _until(
                "waiting for the new process to serve", replacement_served, process, log_path, 120
            )
        os.kill(process.pid, signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 60) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert not [pid for pid in (victim, survivor, replacement) if _alive(pid)]


async def _at_least(pids: Any, count: int) -> list[int]:
    found = await pids()
    return found if len(found) >= count else []


@pytest.mark.timeout(300)
async def test_a_process_that_cannot_start_stops_the_command_with_exit_3(settings, tmp_path):
    """Every process fails its lifespan the same way (its database does not exist): starting
    them again would only repeat it, so the parent stops and says so in its exit status."""
    missing = settings.database_url.rsplit("/", 1)[0] + f"/missing_{uuid.uuid4().hex[:8]}"
    log_path = tmp_path / "api.log"
    env = _command_env(tmp_path / "data", _free_port(), REFIT_DATABASE_URL=missing)
    process = start_refit(["api", "--workers", "2"], env, log_path)
    code = await exit_status(process, 240)
    lines = _log(log_path)
    assert code == 3, log_path.read_text()[-3000:]
    (could_not,) = _events(lines, "refit.api_process_could_not_start")
    # Not started again: the two processes of the first start are the only ones there were.
    spawned = [
        line for line in lines if str(line.get("event")).startswith("Started server process")
    ]
    assert len(spawned) == 2, spawned
    assert could_not["pids"] and not [pid for pid in could_not["pids"] if _alive(pid)]
