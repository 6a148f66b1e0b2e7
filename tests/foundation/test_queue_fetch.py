"""A worker's next job costs the same behind 2,000 waiting jobs as behind one (migration 0030).

Measured in the rows PostgreSQL reads, not in time: the statistics a burst leaves behind
(ANALYZE ran while the queue was empty) and enough fetches on one connection for PostgreSQL to
consider a generic plan. Before 0030 each fetch here looked at every waiting job's lock, about
2,000 index scans a fetch; now it walks the waiting jobs in order and stops at the first free
one. The order procrastinate promises (priority, then age; a job waits while another of its
lock runs or is ahead of it) is checked on the same fetches.
"""

import psycopg

from refit import db

WAITING = 2_000
FETCHES = 12


async def _queue_after_a_burst(conn: psycopg.AsyncConnection) -> int:
    """An empty queue analyzed, then 2,000 jobs, each of its own lock but the first two, which
    share one; the worker that fetches them."""
    await conn.execute("ANALYZE procrastinate_jobs")
    await conn.execute(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, lock, args, status) "
        "SELECT 'default', 'tests.burst', CASE WHEN n <= 2 THEN 'lock:shared' "
        "ELSE 'lock:' || n END, jsonb_build_object('n', n), 'todo' "
        "FROM generate_series(1, %s) AS n",
        (WAITING,),
    )
    cur = await conn.execute("SELECT worker_id FROM procrastinate_register_worker_v1()")
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def _reads(conn: psycopg.AsyncConnection) -> tuple[int, int, int]:
    """This backend's reads of the jobs table not yet reported (the burst's triggers may still
    be among them: the fetches' are the difference)."""
    cur = await conn.execute(
        "SELECT idx_scan, idx_tup_fetch, seq_tup_read FROM pg_stat_xact_user_tables "
        "WHERE relname = 'procrastinate_jobs'"
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


async def test_each_fetch_reads_a_few_rows_behind_a_backlog(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(
        db.libpq_url(database_url), autocommit=True
    ) as conn:
        worker_id = await _queue_after_a_burst(conn)
        async with conn.transaction():
            before = await _reads(conn)
            taken = []
            for _ in range(FETCHES):
                cur = await conn.execute(
                    "SELECT (args->>'n')::int FROM procrastinate_fetch_job_v2(NULL, %s)",
                    (worker_id,),
                )
                row = await cur.fetchone()
                assert row is not None
                taken.append(row[0])
            after = await _reads(conn)
    index_scans, rows_fetched, rows_scanned = (b - a for a, b in zip(before, after, strict=True))
    # Job 2 waits behind job 1, which shares its lock and is running; the rest by age.
    assert taken == [1, *range(3, FETCHES + 2)]
    assert rows_scanned == 0
    assert index_scans <= 5 * FETCHES, f"{index_scans} index scans for {FETCHES} fetches"
    assert rows_fetched <= 10 * FETCHES, f"{rows_fetched} rows read for {FETCHES} fetches"


async def test_the_fetch_function_keeps_its_plan_settings(database_url: str) -> None:
    """A procrastinate upgrade that replaces the function (CREATE OR REPLACE) drops them."""
    async with await psycopg.AsyncConnection.connect(db.libpq_url(database_url)) as conn:
        cur = await conn.execute(
            "SELECT proconfig FROM pg_proc WHERE proname = 'procrastinate_fetch_job_v2'"
        )
        [(config,)] = await cur.fetchall()
    assert set(config) == {"enable_sort=off", "enable_bitmapscan=off"}
