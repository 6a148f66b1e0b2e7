"""A PostgreSQL outage does not stop the job worker for good: the real `refit worker`,
connected through a proxy that the test cuts for a few seconds, is still alive afterwards and
runs a job deferred after the database came back, without anyone restarting it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from refit import queue
from tests.processes import start_refit, stop_refit
from tests.resilience.pg_proxy import CuttableProxy

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 90.0


async def _until(what: str, check, worker: subprocess.Popen, timeout: float = DEADLINE):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        assert worker.poll() is None, f"the worker exited ({worker.returncode}) while {what}"
        if await check():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out {what}")


@pytest.mark.timeout(240)
@pytest.mark.parametrize("outage_seconds", [3])
async def test_worker_survives_a_database_outage(resources, settings, outage_seconds, tmp_path):
    url = make_url(settings.database_url)
    proxy = await CuttableProxy(url.host or "127.0.0.1", url.port or 5432).start()
    through_proxy = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("REFIT_")},
        "REFIT_ENV": "test",
        "REFIT_DATABASE_URL": through_proxy,
        "REFIT_REDIS_URL": settings.redis_url,
        "REFIT_REDIS_KEY_PREFIX": settings.redis_key_prefix,
        "REFIT_DATA_DIR": str(tmp_path / "data"),
        "REFIT_WORKER_HEARTBEAT_SECONDS": "0.5",
        "REFIT_WORKER_STALLED_AFTER_SECONDS": "3",
    }
    log_path = tmp_path / "worker.log"
    worker = start_refit(["worker"], env, log_path)
    try:

        async def heartbeat_after(moment: object) -> bool:
            async with resources.sessionmaker() as session:
                return bool(
                    await session.scalar(
                        text(
                            "SELECT count(*) FROM procrastinate_workers "
                            "WHERE last_heartbeat > CAST(:m AS timestamptz)"
                        ),
                        {"m": moment},
                    )
                )

        async def now() -> object:
            async with resources.sessionmaker() as session:
                return await session.scalar(text("SELECT clock_timestamp()"))

        await _until("starting", lambda: heartbeat_after("-infinity"), worker)
        proxy.cut()
        await asyncio.sleep(outage_seconds)  # the outage itself: its length is the test's input
        proxy.restore()
        back = await now()

        # A job deferred after the outage runs: the worker is taking jobs again.
        marker = uuid.uuid4().hex
        async with resources.sessionmaker() as session, session.begin():
            job_id = await queue.defer(
                session, "idempotency.prune", queueing_lock=marker, timestamp=0
            )

        async def done() -> bool:
            async with resources.sessionmaker() as session:
                status = await session.scalar(
                    text("SELECT status FROM procrastinate_jobs WHERE id = :id"), {"id": job_id}
                )
            return status == "succeeded"

        await _until("waiting for a job after the outage", done, worker)
        await _until(
            "waiting for a heartbeat after the outage", lambda: heartbeat_after(back), worker
        )
    finally:
        await stop_refit(worker)
        await proxy.stop()
        print((await asyncio.to_thread(log_path.read_text))[-5000:])  # shown on failure
