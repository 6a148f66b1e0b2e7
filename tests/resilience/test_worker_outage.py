"""A PostgreSQL outage does not stop the job worker for good: the real `refit worker`,
connected through a proxy that the test cuts for a few seconds, restarts its job loop by
itself (procrastinate's worker stops when it loses its LISTEN connection; the process starts a
new one, logged and registered anew), stays the same process, and runs a job deferred after
the database came back. On TCP or the embedded default's unix socket alike."""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest
from sqlalchemy import text

from refit import queue
from tests.processes import read_log, start_refit, stop_refit, until
from tests.resilience.pg_proxy import CuttableProxy

DEADLINE = 90.0


@pytest.mark.timeout(240)
@pytest.mark.parametrize("outage_seconds", [3])
async def test_worker_survives_a_database_outage(resources, settings, outage_seconds, tmp_path):
    proxy = await CuttableProxy.for_database(settings.database_url).start()
    through_proxy = proxy.database_url(settings.database_url)
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

        async def newest_worker() -> int:
            async with resources.sessionmaker() as session:
                return int(
                    await session.scalar(
                        text("SELECT coalesce(max(id), 0) FROM procrastinate_workers")
                    )
                )

        await until("starting", lambda: heartbeat_after("-infinity"), worker, log_path, DEADLINE)
        before = await newest_worker()
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

        await until("waiting for a job after the outage", done, worker, log_path, DEADLINE)

        # The job loop was restarted in this process: a worker registered after the one that
        # ran before the outage (procrastinate registers each run of a worker as a new row),
        # beating after the database came back, and the restart in the process's log.
        async def restarted() -> bool:
            async with resources.sessionmaker() as session:
                return bool(
                    await session.scalar(
                        text(
                            "SELECT count(*) FROM procrastinate_workers WHERE id > :before "
                            "AND last_heartbeat > CAST(:back AS timestamptz)"
                        ),
                        {"before": before, "back": back},
                    )
                )

        await until(
            "waiting for the restarted worker's heartbeat", restarted, worker, log_path, DEADLINE
        )
        assert "queue.worker_restarting" in await read_log(log_path)
        assert worker.poll() is None, "the process itself never exited"
    finally:
        await stop_refit(worker)
        await proxy.stop()
        print((await asyncio.to_thread(log_path.read_text))[-5000:])  # shown on failure
