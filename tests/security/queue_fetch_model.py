"""The queue's promise as a model, and the SQL helpers the red team's fetch attacks use
(tests/security/test_attack_queue_fetch.py): procrastinate_fetch_job_v2's answer written from
its definition (procrastinate's schema.sql), not from what the database answers."""

from __future__ import annotations

import random
from dataclasses import dataclass

import psycopg

from refit import db

QUEUES = ("default", "labels", "mail")
LOCKS = (None, None, "lock:a", "lock:b", "lock:c", "lock:d")
PRIORITIES = (-3, 0, 0, 0, 1, 5)
DONE = ("succeeded", "failed", "cancelled", "aborted", "aborting")


@dataclass
class Job:
    id: int
    queue: str
    priority: int
    lock: str | None
    status: str
    when: str  # "none", "past", "future"


def model_next(jobs: dict[int, Job], queues: list[str] | None) -> int | None:
    """procrastinate_fetch_job_v2's answer, from its definition."""
    running = {j.lock for j in jobs.values() if j.status == "doing" and j.lock is not None}
    first_of_lock: dict[str, tuple[int, int]] = {}
    for j in jobs.values():
        if j.status == "todo" and j.lock is not None:
            key = (-j.priority, j.id)
            if j.lock not in first_of_lock or key < first_of_lock[j.lock]:
                first_of_lock[j.lock] = key
    eligible = [
        j
        for j in jobs.values()
        if j.status == "todo"
        and (queues is None or j.queue in queues)
        and j.when != "future"
        and (
            j.lock is None
            or (j.lock not in running and first_of_lock[j.lock] == (-j.priority, j.id))
        )
    ]
    if not eligible:
        return None
    return min(eligible, key=lambda j: (-j.priority, j.id)).id


async def connect(database_url: str) -> psycopg.AsyncConnection:
    return await psycopg.AsyncConnection.connect(db.libpq_url(database_url), autocommit=True)


async def register_worker(conn: psycopg.AsyncConnection) -> int:
    cur = await conn.execute("SELECT worker_id FROM procrastinate_register_worker_v1()")
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def fetch_job(
    conn: psycopg.AsyncConnection, worker_id: int, queues: list[str] | None = None
) -> int | None:
    cur = await conn.execute(
        "SELECT id FROM procrastinate_fetch_job_v2(%s::varchar[], %s)", (queues, worker_id)
    )
    row = await cur.fetchone()
    assert row is not None
    return None if row[0] is None else int(row[0])


async def insert_job(conn: psycopg.AsyncConnection, job: Job) -> int:
    scheduled = {
        "none": "NULL",
        "past": "now() - interval '1 hour'",
        "future": "now() + interval '1 day'",
    }[job.when]
    cur = await conn.execute(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, priority, lock, status, "
        f"scheduled_at) VALUES (%s, 'tests.attack', %s, %s, %s, {scheduled}) RETURNING id",
        (job.queue, job.priority, job.lock, job.status),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


def random_job(rng: random.Random, doing_locks: set[str | None]) -> Job:
    lock = rng.choice(LOCKS)
    status = rng.choices(["todo", "doing", "done"], weights=[8, 1, 1])[0]
    if status == "doing" and (lock in doing_locks):
        status = "todo"  # procrastinate: one 'doing' job per lock (a unique index)
    if status == "doing" and lock is not None:
        doing_locks.add(lock)
    if status == "done":
        status = rng.choice(DONE)
    return Job(
        id=0,
        queue=rng.choice(QUEUES),
        priority=rng.choice(PRIORITIES),
        lock=lock,
        status=status,
        when=rng.choices(["none", "past", "future"], weights=[5, 2, 2])[0],
    )


def random_target(rng: random.Random) -> list[str] | None:
    pick = rng.random()
    if pick < 0.4:
        return None
    if pick < 0.45:
        return []  # no queue at all: nothing to take
    if pick < 0.5:
        return ["nowhere"]
    return rng.sample(QUEUES, rng.randint(1, 2))
