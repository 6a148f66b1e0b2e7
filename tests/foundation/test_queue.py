"""The job queue in PostgreSQL: a job exists iff the change that caused it committed."""

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from refit import queue
from refit.app import create_app
from refit.errors import Conflict
from refit.transactions import SessionDep
from tests.foundation.queue_probe import always_fails, record_run

ROOT = Path(__file__).resolve().parents[2]


async def _jobs(resources, task_name="tests.record_run"):
    async with resources.sessionmaker() as session:
        rows = await session.execute(
            text("SELECT id, status, args FROM procrastinate_jobs WHERE task_name = :t"),
            {"t": task_name},
        )
        return rows.all()


async def _users(resources):
    async with resources.sessionmaker() as session:
        return set((await session.execute(text("SELECT wallet_address FROM users"))).scalars())


def _app_deferring(resources):
    """A request that writes a row and defers a job in its one transaction, then either
    returns (commit) or raises a business error (rollback)."""
    app = create_app(resources.settings, resources=resources)

    @app.post("/probe/{wallet}")
    async def probe(wallet: str, session: SessionDep, fail: bool = False) -> dict[str, str]:
        await session.execute(text("INSERT INTO users (wallet_address) VALUES (:w)"), {"w": wallet})
        await queue.defer(session, record_run, marker=wallet)
        if fail:
            raise Conflict("changed my mind", code="probe_conflict")
        return {"ok": wallet}

    return app


async def _post(app, path):
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as http:
        return await http.post(path)


async def test_rolled_back_request_leaves_no_job(resources):
    response = await _post(_app_deferring(resources), "/probe/w-rollback?fail=true")
    assert response.status_code == 409
    assert await _jobs(resources) == []
    assert "w-rollback" not in await _users(resources)


async def test_committed_request_leaves_exactly_one_job(resources, run_jobs):
    response = await _post(_app_deferring(resources), "/probe/w-commit")
    assert response.status_code == 200
    jobs = await _jobs(resources)
    # The deferring request's id rides along (refit.logs.job_origin) for the job's log lines.
    origin = {"_origin": {"request_id": response.headers["x-request-id"]}}
    assert [(j.status, j.args) for j in jobs] == [("todo", {"marker": "w-commit", **origin})]
    assert "w-commit" in await _users(resources)

    await run_jobs()
    assert [j.status for j in await _jobs(resources)] == ["succeeded"]
    runs = await resources.redis.get(resources.redis_key("probe", "w-commit", "runs"))
    assert runs == "1"


async def test_duplicate_deferral_under_one_queueing_lock_keeps_the_transactions_writes(
    resources,
):
    lock = f"probe:{uuid.uuid4()}"
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(text("INSERT INTO users (wallet_address) VALUES ('first')"))
        first = await queue.defer(session, record_run, queueing_lock=lock, marker="a")
        await session.execute(text("INSERT INTO users (wallet_address) VALUES ('second')"))
        second = await queue.defer(session, record_run, queueing_lock=lock, marker="a")
        await session.execute(text("INSERT INTO users (wallet_address) VALUES ('third')"))
    assert first is not None and second is None
    # Another transaction, later, hitting the same waiting job's lock.
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(text("INSERT INTO users (wallet_address) VALUES ('fourth')"))
        assert await queue.defer(session, record_run, queueing_lock=lock, marker="a") is None
    assert {"first", "second", "third", "fourth"} <= await _users(resources)
    assert len(await _jobs(resources)) == 1


async def test_failed_job_stays_queryable_with_its_error(resources, run_jobs):
    async with resources.sessionmaker() as session, session.begin():
        job_id = await queue.defer(session, always_fails, reason="address invalid")
    for _ in range(3):  # the first attempt and the retry (due at once: base 0)
        await run_jobs()
    async with resources.sessionmaker() as session:
        status = await session.scalar(
            text("SELECT status FROM procrastinate_jobs WHERE id = :id"), {"id": job_id}
        )
        errors = (
            await session.execute(
                text(
                    "SELECT attempt, error_type, message FROM job_errors WHERE job_id = :id "
                    "ORDER BY id"
                ),
                {"id": job_id},
            )
        ).all()
    assert status == "failed"
    assert [(e.attempt, e.error_type) for e in errors] == [(1, "RuntimeError"), (2, "RuntimeError")]
    assert errors[-1].message == "carrier said no: address invalid"


async def _wait_for(predicate, timeout=30.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.2)
    raise AssertionError("timed out waiting")


async def _running_jobs(resources) -> set[int]:
    async with resources.sessionmaker() as session:
        rows = await session.execute(
            text("SELECT id FROM procrastinate_jobs WHERE status = 'doing'")
        )
        return set(rows.scalars())


async def _nothing_else_active(resources) -> bool:
    async with resources.sessionmaker() as session:
        busy = await session.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND state <> 'idle' AND pid <> pg_backend_pid()"
            )
        )
    return busy == 0


async def _heartbeats_age(resources, seconds):
    """As the passing of time would: every worker's last heartbeat was `seconds` earlier."""
    async with resources.sessionmaker() as session, session.begin():
        aged = await session.execute(
            text(
                "UPDATE procrastinate_workers "
                "SET last_heartbeat = last_heartbeat - make_interval(secs => :s)"
            ),
            {"s": seconds},
        )
        assert aged.rowcount >= 1


@pytest.mark.timeout(120)
async def test_worker_killed_mid_job_is_detected_and_the_job_runs_again(
    resources, settings, run_jobs
):
    marker = f"kill-{uuid.uuid4().hex[:6]}"
    async with resources.sessionmaker() as session, session.begin():
        job_id = await queue.defer(session, record_run, marker=marker, hang_first=True)

    env = {
        **os.environ,
        "REFIT_DATABASE_URL": settings.database_url,
        "REFIT_REDIS_URL": settings.redis_url,
        "REFIT_REDIS_KEY_PREFIX": settings.redis_key_prefix,
        "REFIT_WORKER_HEARTBEAT_SECONDS": str(settings.worker_heartbeat_seconds),
        "REFIT_WORKER_STALLED_AFTER_SECONDS": str(settings.worker_stalled_after_seconds),
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.foundation.queue_worker"], cwd=ROOT, env=env
    )
    try:
        started_key = resources.redis_key("probe", marker, "started")
        await _wait_for(lambda: resources.redis.exists(started_key))
        beats = await queue.worker_heartbeats()
        assert beats["alive"] == 1
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()

    async def job_status():
        async with resources.sessionmaker() as session:
            return await session.scalar(
                text("SELECT status FROM procrastinate_jobs WHERE id = :id"), {"id": job_id}
            )

    assert await job_status() == "doing"
    # A statement the worker sent just before it died still runs to its end on the server (a
    # fetch that takes one more job, seen once on a loaded machine): what it left is counted
    # once nothing but this test's own connections is busy in the test's database.
    await _wait_for(lambda: _nothing_else_active(resources), timeout=10)
    # The probe, and any periodic job the worker had started when it died.
    left_running = await _running_jobs(resources)
    assert job_id in left_running
    # Nothing is retried while the dead worker's heartbeat is still fresh...
    assert await queue.retry_stalled_jobs(queue.queue) == 0
    # ...and once it is stale (time passes in SQL), the periodic sweep puts them all back.
    await _heartbeats_age(resources, settings.worker_stalled_after_seconds + 1)
    assert (await queue.worker_heartbeats())["alive"] == 0
    assert await queue.retry_stalled_jobs(queue.queue) == len(left_running)
    assert await _running_jobs(resources) == set()
    assert await job_status() == "todo"

    await run_jobs()
    assert await job_status() == "succeeded"
    assert await resources.redis.get(resources.redis_key("probe", marker, "runs")) == "2"
