"""Lock races shown, not slept for: a test holds a row lock until PostgreSQL itself reports
the other side waiting on it, then lets go."""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession


async def backend_pid(session: AsyncSession) -> int:
    """The PostgreSQL backend serving this session's transaction (the lock holder to name)."""
    pid = await session.scalar(text("SELECT pg_backend_pid()"))
    assert isinstance(pid, int)
    return pid


async def wait_until_waiting_on_lock(
    engine: AsyncEngine,
    *,
    count: int = 1,
    blocked_by: int | None = None,
    timeout: float = 15.0,
) -> list[int]:
    """Return the pids once at least `count` backends of this test's database are blocked on
    a lock (pg_stat_activity.wait_event_type = 'Lock'), by the backend `blocked_by` if given;
    fail after `timeout` seconds.

    Each test has its own database, so every waiter found is one of the test's own. Each poll
    is its own transaction: pg_stat_activity is a snapshot taken once per transaction.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    waiting: list[int] = []
    async with engine.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        while True:
            rows = await autocommit.execute(
                text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' "
                    "AND (CAST(:holder AS integer) IS NULL "
                    "     OR CAST(:holder AS integer) = ANY(pg_blocking_pids(pid))) "
                    "ORDER BY pid"
                ),
                {"holder": blocked_by},
            )
            waiting = list(rows.scalars())
            if len(waiting) >= count:
                return waiting
            if loop.time() > deadline:
                raise AssertionError(
                    f"{len(waiting)} backend(s) waiting on a lock after {timeout} s, "
                    f"expected {count}: the race never happened"
                )
            await asyncio.sleep(0.01)
