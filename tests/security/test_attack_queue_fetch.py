"""Red-team of migration 0030 (procrastinate_fetch_job_v2 with enable_sort/enable_bitmapscan
off, and the partial index ix_procrastinate_jobs_lock_waiting).

The plan settings and the index may change how PostgreSQL finds the next job, never which job:
every fetch here is compared with a model of procrastinate's promise (its schema.sql), written
from the function's text, not from what the database answers:

- only 'todo' jobs, scheduled_at NULL or past, of the target queues (NULL: every queue);
- a job with a lock waits while another job of that lock is 'doing', or is 'todo' ahead of it
  (higher priority, or equal priority and lower id) -- whatever that other job's queue or
  scheduled_at;
- of the rest, the highest priority, then the lowest id;
- SKIP LOCKED: concurrent fetchers never get the same job.

No timings, no sleeps: concurrency is made with open transactions (a fetcher holds its row
until it commits) and with fetches gathered on separate connections.
"""

from __future__ import annotations

import asyncio
import random
import uuid

import psycopg
import pytest

from refit import db, migrate
from tests.conftest import _admin_execute, with_database
from tests.security.queue_fetch_model import (
    Job,
    connect,
    fetch_job,
    insert_job,
    model_next,
    random_job,
    random_target,
    register_worker,
)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
async def test_every_fetch_is_the_one_procrastinate_promises(database_url: str, seed: int) -> None:
    """Random queues of 80 jobs (priorities, four locks and none, three queues, scheduled in
    the past and the future, every status), fetched on one connection (the generic plan after
    five calls) behind statistics of an empty table, with jobs finished and retried between
    fetches; each answer against the model."""
    rng = random.Random(seed)
    async with await connect(database_url) as conn:
        await conn.execute("ANALYZE procrastinate_jobs")
        worker_id = await register_worker(conn)
        jobs: dict[int, Job] = {}
        doing_locks: set[str | None] = set()
        for _ in range(80):
            job = random_job(rng, doing_locks)
            job.id = await insert_job(conn, job)
            jobs[job.id] = job
        steps = 0
        for _ in range(160):
            action = rng.random()
            doing = [j for j in jobs.values() if j.status == "doing"]
            if action < 0.2 and doing:
                finished = rng.choice(doing)
                await conn.execute(
                    "SELECT procrastinate_finish_job_v1(%s, 'succeeded', false)", (finished.id,)
                )
                finished.status = "succeeded"
                continue
            if action < 0.27 and doing:
                # a retry: back to 'todo' with its old id, ahead of younger jobs of its lock
                retried = rng.choice(doing)
                await conn.execute(
                    "UPDATE procrastinate_jobs SET status = 'todo', worker_id = NULL WHERE id = %s",
                    (retried.id,),
                )
                retried.status = "todo"
                continue
            target = random_target(rng)
            expected = model_next(jobs, target)
            got = await fetch_job(conn, worker_id, target)
            assert got == expected, (
                f"seed {seed} step {steps}: queues={target} expected job {expected} "
                f"({jobs.get(expected or -1)}), got {got} ({jobs.get(got or -1)})"
            )
            if got is not None:
                jobs[got].status = "doing"
            steps += 1
        # the database agrees with the model on every job's status
        cur = await conn.execute("SELECT id, status::text FROM procrastinate_jobs")
        assert dict(await cur.fetchall()) == {j.id: j.status for j in jobs.values()}


async def test_a_locked_job_waits_behind_one_that_cannot_run_yet(database_url: str) -> None:
    """A 'todo' job of the lock ahead (higher priority) holds the lock even when it is
    scheduled in the future or in another queue than the fetcher's."""
    async with await connect(database_url) as conn:
        worker_id = await register_worker(conn)
        future = await insert_job(conn, Job(0, "default", 5, "lock:x", "todo", "future"))
        other_queue = await insert_job(conn, Job(0, "mail", 5, "lock:y", "todo", "none"))
        behind_future = await insert_job(conn, Job(0, "default", 0, "lock:x", "todo", "none"))
        behind_other = await insert_job(conn, Job(0, "default", 0, "lock:y", "todo", "none"))
        free = await insert_job(conn, Job(0, "default", -1, None, "todo", "none"))
        assert await fetch_job(conn, worker_id, ["default"]) == free
        assert await fetch_job(conn, worker_id, ["default"]) is None
        assert await fetch_job(conn, worker_id, None) == other_queue
        assert await fetch_job(conn, worker_id, None) is None  # y doing, x future
        await conn.execute(
            "UPDATE procrastinate_jobs SET scheduled_at = now() - interval '1 minute' "
            "WHERE id = %s",
            (future,),
        )
        assert await fetch_job(conn, worker_id, None) == future
        for job_id in (future, other_queue):
            await conn.execute(
                "SELECT procrastinate_finish_job_v1(%s, 'succeeded', false)", (job_id,)
            )
        assert {await fetch_job(conn, worker_id), await fetch_job(conn, worker_id)} == {
            behind_future,
            behind_other,
        }


async def test_priority_beats_age_and_age_breaks_ties(database_url: str) -> None:
    async with await connect(database_url) as conn:
        worker_id = await register_worker(conn)
        old_low = await insert_job(conn, Job(0, "default", -5, None, "todo", "none"))
        old_mid = await insert_job(conn, Job(0, "default", 0, None, "todo", "past"))
        new_high = await insert_job(conn, Job(0, "default", 10, None, "todo", "none"))
        new_mid = await insert_job(conn, Job(0, "default", 0, None, "todo", "none"))
        await insert_job(conn, Job(0, "default", 100, None, "todo", "future"))
        taken = [await fetch_job(conn, worker_id) for _ in range(5)]
    assert taken == [new_high, old_mid, new_mid, old_low, None]


async def test_many_jobs_of_one_lock_run_one_at_a_time_in_order(database_url: str) -> None:
    """300 jobs of one lock (random priorities) among 30 free ones, statistics of an empty
    table: each fetch takes the lock's next job only once the one before it finished."""
    rng = random.Random(30)
    async with await connect(database_url) as conn:
        await conn.execute("ANALYZE procrastinate_jobs")
        worker_id = await register_worker(conn)
        await conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, priority, lock) "
            "SELECT 'default', 'tests.one_lock', p, 'lock:one' FROM unnest(%s::int[]) AS p",
            ([rng.choice((-1, 0, 0, 2)) for _ in range(300)],),
        )
        await conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, priority) "
            "SELECT 'default', 'tests.free', -10 FROM generate_series(1, 30)"
        )
        cur = await conn.execute(
            "SELECT id FROM procrastinate_jobs WHERE lock = 'lock:one' ORDER BY priority DESC, id"
        )
        order = [row[0] for row in await cur.fetchall()]
        taken = []
        free_taken = 0
        for expected in order:
            got = await fetch_job(conn, worker_id)
            assert got == expected
            taken.append(got)
            # the lock's next job waits: only a free job (priority -10) may come out
            other = await fetch_job(conn, worker_id)
            if other is not None:
                free_taken += 1
                cur = await conn.execute(
                    "SELECT lock FROM procrastinate_jobs WHERE id = %s", (other,)
                )
                assert (await cur.fetchone()) == (None,)
            await conn.execute("SELECT procrastinate_finish_job_v1(%s, 'succeeded', false)", (got,))
        assert taken == order
        assert free_taken == 30
        assert await fetch_job(conn, worker_id) is None


async def test_the_fetch_does_not_leave_its_settings_on_the_session(database_url: str) -> None:
    """A pooled connection that ran a fetch plans its next queries as before (the function's
    SET applies to its own run only), also inside a transaction and after an error."""
    async with await connect(database_url) as conn:
        worker_id = await register_worker(conn)
        await insert_job(conn, Job(0, "default", 0, None, "todo", "none"))
        await fetch_job(conn, worker_id)
        async with conn.transaction():
            await fetch_job(conn, worker_id)
            cur = await conn.execute("SELECT current_setting('enable_sort')")
            assert await cur.fetchone() == ("on",)
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            await conn.execute("SELECT id FROM procrastinate_fetch_job_v2('{x}', 'nope')")
        cur = await conn.execute(
            "SELECT current_setting('enable_sort'), current_setting('enable_bitmapscan')"
        )
        assert await cur.fetchone() == ("on", "on")


async def test_n_plus_one_fetchers_in_open_transactions(database_url: str) -> None:
    """Five jobs (three of their own lock, two without), six workers each holding its fetch
    uncommitted: five get a different job, the sixth none; then a lock's second job is held
    back from every fetcher while its first is taken but not yet committed."""
    conns = [await connect(database_url) for _ in range(6)]
    try:
        setup = conns[0]
        ids = []
        for lock in ("lock:1", "lock:2", "lock:3", None, None):
            ids.append(await insert_job(setup, Job(0, "default", 0, lock, "todo", "none")))
        workers = [await register_worker(c) for c in conns]
        got = []
        for conn, worker_id in zip(conns, workers, strict=True):
            await conn.execute("BEGIN")
            got.append(await fetch_job(conn, worker_id))
        assert sorted(g for g in got if g is not None) == sorted(ids)
        assert got.count(None) == 1
        for conn in conns:
            await conn.execute("COMMIT")
        cur = await setup.execute(
            "SELECT count(*), count(DISTINCT worker_id) FROM procrastinate_jobs "
            "WHERE status = 'doing'"
        )
        assert await cur.fetchone() == (5, 5)

        first = await insert_job(setup, Job(0, "default", 0, "lock:z", "todo", "none"))
        second = await insert_job(setup, Job(0, "default", 0, "lock:z", "todo", "none"))
        await conns[1].execute("BEGIN")
        assert await fetch_job(conns[1], workers[1]) == first
        for conn, worker_id in zip(conns[2:], workers[2:], strict=True):
            assert await fetch_job(conn, worker_id) is None  # second waits behind first
        await conns[1].execute("COMMIT")
        assert await fetch_job(conns[2], workers[2]) is None  # first is 'doing' now
        await setup.execute("SELECT procrastinate_finish_job_v1(%s, 'succeeded', false)", (first,))
        assert await fetch_job(conns[2], workers[2]) == second
    finally:
        for conn in conns:
            await conn.close()


@pytest.mark.parametrize("jobs", [1, 7])
async def test_gathered_fetchers_never_share_a_job(database_url: str, jobs: int) -> None:
    """N jobs, N+1 fetches at once on N+1 connections, again and again: exactly N answers, all
    different; and two jobs of one lock fetched at once by three: only the first comes out."""
    conns = [await connect(database_url) for _ in range(max(jobs + 1, 3))]
    try:
        workers = [await register_worker(c) for c in conns]
        for round_ in range(15):
            ids = set()
            for n in range(jobs):
                lock = f"lock:{round_}:{n}" if n % 2 else None
                ids.add(await insert_job(conns[0], Job(0, "default", 0, lock, "todo", "none")))
            got = await asyncio.gather(
                *(fetch_job(c, w) for c, w in zip(conns[: jobs + 1], workers, strict=False))
            )
            taken = [g for g in got if g is not None]
            assert sorted(taken) == sorted(ids), f"round {round_}: {got}"
            assert got.count(None) == 1

        for round_ in range(15):
            lock = f"lock:shared:{round_}"
            first = await insert_job(conns[0], Job(0, "default", 0, lock, "todo", "none"))
            await insert_job(conns[0], Job(0, "default", 0, lock, "todo", "none"))
            got = await asyncio.gather(
                *(fetch_job(c, w) for c, w in zip(conns[:3], workers[:3], strict=True))
            )
            assert sorted(got, key=lambda g: g or 0) == [None, None, first], f"round {round_}"
            await conns[0].execute(
                "SELECT procrastinate_finish_job_v1(%s, 'succeeded', false)", (first,)
            )
            # drain the second so the next round starts clean
            assert await fetch_job(conns[0], workers[0]) is not None
    finally:
        for conn in conns:
            await conn.close()


async def _fetch_state(url: str) -> tuple[list[str] | None, str | None]:
    async with await psycopg.AsyncConnection.connect(db.libpq_url(url)) as conn:
        cur = await conn.execute(
            "SELECT proconfig FROM pg_proc WHERE proname = 'procrastinate_fetch_job_v2'"
        )
        [(config,)] = await cur.fetchall()
        cur = await conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_procrastinate_jobs_lock_waiting'"
        )
        row = await cur.fetchone()
    return config, None if row is None else row[0]


async def test_0030_goes_down_and_up_again(admin_url: str, template_db: str) -> None:
    name = f"refit_mig30_{uuid.uuid4().hex[:10]}"
    await _admin_execute(admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    url = with_database(admin_url, name)
    try:
        config, index = await _fetch_state(url)
        assert set(config or ()) == {"enable_sort=off", "enable_bitmapscan=off"}
        assert index is not None

        await asyncio.to_thread(migrate.downgrade, url, "0029")
        assert await _fetch_state(url) == (None, None)
        async with await connect(url) as conn:  # the function still works without them
            worker_id = await register_worker(conn)
            job = await insert_job(conn, Job(0, "default", 0, "lock:m", "todo", "none"))
            assert await fetch_job(conn, worker_id) == job

        await asyncio.to_thread(migrate.upgrade, url)
        config, index = await _fetch_state(url)
        assert set(config or ()) == {"enable_sort=off", "enable_bitmapscan=off"}
        assert index is not None
        assert "(lock)" in index
        assert "IS NOT NULL" in index and "todo" in index and "doing" in index
        await asyncio.to_thread(migrate.upgrade, url)  # at head: nothing to do, no error
    finally:
        await _admin_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
