"""`refit run` supervises its components: the worker process killed (as the OOM killer would)
is started again and takes jobs; the API process killed is started again and answers; the
parent and the other component go on meanwhile, and the log says what happened."""

from __future__ import annotations

import json
import os
import signal
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from refit import queue
from tests.processes import free_port as _free_port
from tests.processes import start_refit, stop_refit, until


def _started(log_path: Path, component: str) -> list[int]:
    """The pids `refit run` started `component` with, in order (its JSON log lines)."""
    pids = []
    for line in log_path.read_text().splitlines():
        if '"run.component_started"' in line:
            entry = json.loads(line)
            if entry["component"] == component:
                pids.append(entry["pid"])
    return pids


@pytest.mark.timeout(420)
async def test_refit_run_restarts_a_component_that_died(resources, settings, tmp_path):
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("REFIT_")},
        "REFIT_ENV": "test",
        "REFIT_DATABASE_URL": settings.database_url,
        "REFIT_REDIS_URL": settings.redis_url,
        "REFIT_REDIS_KEY_PREFIX": settings.redis_key_prefix,
        "REFIT_DATA_DIR": str(tmp_path / "data"),
        "REFIT_PORT": str(port),
        "REFIT_LOG_FORMAT": "json",
        "REFIT_SOLANA_RPC_URL": "http://127.0.0.1:9",  # no local ledger
        "REFIT_WORKER_HEARTBEAT_SECONDS": "0.5",
        "REFIT_WORKER_STALLED_AFTER_SECONDS": "3",
    }
    log_path = tmp_path / "refit-run.log"
    process = start_refit(["run"], env, log_path)
    try:
        async with httpx.AsyncClient(base_url=base, timeout=5) as http:

            async def ready() -> bool:
                try:
                    return (await http.get("/readyz")).status_code == 200
                except httpx.HTTPError:
                    return False

            await until("starting", ready, process, log_path, 240)

            # The worker, killed: a new one is started and runs a job deferred after.
            [worker] = _started(log_path, "worker")
            os.kill(worker, signal.SIGKILL)
            marker = uuid.uuid4().hex
            async with resources.sessionmaker() as session, session.begin():
                job_id = await queue.defer(
                    session, "idempotency.prune", queueing_lock=marker, timestamp=0
                )

            async def job_done() -> bool:
                async with resources.sessionmaker() as session:
                    status = await session.scalar(
                        text("SELECT status FROM procrastinate_jobs WHERE id = :id"),
                        {"id": job_id},
                    )
                return status == "succeeded"

            await until(
                "running a job after the worker was killed", job_done, process, log_path, 120
            )
            assert len(_started(log_path, "worker")) == 2
            await until("being ready again", ready, process, log_path, 120)

            # The API, killed: a new one answers on the same port.
            [api] = _started(log_path, "api")
            os.kill(api, signal.SIGKILL)

            async def api_again() -> bool:
                return len(_started(log_path, "api")) == 2 and await ready()

            await until("serving again after the API was killed", api_again, process, log_path, 120)
    finally:
        await stop_refit(process)
        print(log_path.read_text()[-6000:])  # shown on failure
    exits = [
        json.loads(line)
        for line in log_path.read_text().splitlines()
        if '"run.component_exited"' in line
    ]
    assert [(e["component"], e["exit_code"]) for e in exits] == [
        ("worker", -signal.SIGKILL),
        ("api", -signal.SIGKILL),
    ]
    assert process.returncode == 0  # stopped by SIGTERM, cleanly
