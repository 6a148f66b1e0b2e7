"""A job retried while another of its queueing lock waits takes that one's place (migration
0031). Before it, procrastinate's retry raised a unique violation: the job stayed 'doing' for
good and the waiting one behind it never ran (tests/security/test_attack_label_answer.py
shows it on the label job end to end)."""

import datetime as dt

import psycopg
import pytest

from refit import db

LOCK = "tests.same-work:1"


async def _jobs(database_url: str, *queueing_locks: str) -> tuple[psycopg.AsyncConnection, int]:
    """One job a worker runs, then one waiting job per further lock given (each due now)."""
    conn = await psycopg.AsyncConnection.connect(db.libpq_url(database_url), autocommit=True)
    cur = await conn.execute("SELECT worker_id FROM procrastinate_register_worker_v1()")
    worker = await cur.fetchone()
    assert worker is not None
    await _insert(conn, queueing_locks[0])
    cur = await conn.execute("SELECT id FROM procrastinate_fetch_job_v2(NULL, %s)", (worker[0],))
    running = await cur.fetchone()
    assert running is not None and running[0] is not None
    for lock in queueing_locks[1:]:
        await _insert(conn, lock)
    return conn, int(running[0])


async def _insert(conn: psycopg.AsyncConnection, queueing_lock: str) -> None:
    await conn.execute(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, queueing_lock, args) "
        "VALUES ('default', 'tests.same_work', %s, '{}')",
        (queueing_lock,),
    )


async def _retry(conn: psycopg.AsyncConnection, job_id: int, at: dt.datetime) -> None:
    await conn.execute("SELECT procrastinate_retry_job_v2(%s, %s, NULL, NULL, NULL)", (job_id, at))


async def _state(conn: psycopg.AsyncConnection) -> list[tuple[int, str, int, dt.datetime | None]]:
    cur = await conn.execute(
        "SELECT id, status::text, attempts, scheduled_at FROM procrastinate_jobs ORDER BY id"
    )
    return [(int(r[0]), r[1], int(r[2]), r[3]) for r in await cur.fetchall()]


async def _waiting_at(conn: psycopg.AsyncConnection, job_id: int, at: dt.datetime) -> None:
    await conn.execute(
        "UPDATE procrastinate_jobs SET scheduled_at = %s WHERE id = %s", (at, job_id)
    )


async def test_a_retry_takes_the_place_of_the_waiting_job(database_url: str) -> None:
    conn, running = await _jobs(database_url, LOCK, LOCK)
    async with conn:
        later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
        await _retry(conn, running, later)
        [retried, waiting] = await _state(conn)
        # The waiting job was due now (a webhook's "due now"): so is the retry.
        assert retried == (running, "todo", 1, None)
        assert waiting[1] == "cancelled"


async def test_the_retry_is_due_at_the_earlier_of_the_two(database_url: str) -> None:
    conn, running = await _jobs(database_url, LOCK, LOCK)
    async with conn:
        now = dt.datetime.now(dt.UTC)
        waiting = running + 1
        await _waiting_at(conn, waiting, now + dt.timedelta(minutes=10))
        await _retry(conn, running, now + dt.timedelta(minutes=1))
        [retried, cancelled] = await _state(conn)
        assert retried == (running, "todo", 1, now + dt.timedelta(minutes=1))
        assert cancelled[:2] == (waiting, "cancelled")


async def test_a_retry_alone_and_other_locks_are_left_as_they_were(database_url: str) -> None:
    conn, running = await _jobs(database_url, LOCK, "tests.same-work:2")
    async with conn:
        later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
        await _retry(conn, running, later)
        [retried, other] = await _state(conn)
        assert retried == (running, "todo", 1, later)
        assert other[1:] == ("todo", 0, None)


async def test_an_operators_retry_of_a_failed_job_is_refused_beside_a_waiting_one(
    database_url: str,
) -> None:
    """A job that failed for good, retried by hand while one of its work waits: refused as
    before (the jobs page says "already waiting"), the waiting one left alone."""
    conn, running = await _jobs(database_url, LOCK, LOCK)
    async with conn:
        await conn.execute(
            "UPDATE procrastinate_jobs SET status = 'failed' WHERE id = %s", (running,)
        )
        with pytest.raises(psycopg.errors.UniqueViolation):
            await _retry(conn, running, dt.datetime.now(dt.UTC))
        [failed, waiting] = await _state(conn)
        assert failed[1] == "failed" and waiting[1:] == ("todo", 0, None)
