"""The process's LISTEN connection (refit/listen.py) as PostgreSQL sees it: found by its
application_name in pg_stat_activity, so a test can kill it and wait for its successor."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import text

from refit.listen import APPLICATION_NAME


async def listener_pids(resources) -> list[int]:
    async with resources.sessionmaker() as session:
        rows = await session.scalars(
            text(
                "SELECT pid FROM pg_stat_activity "
                "WHERE application_name = :name AND datname = current_database()"
            ),
            {"name": APPLICATION_NAME},
        )
        return list(rows)


async def one_listener(resources, other_than: int | None = None) -> int:
    """The pid of the one listener connection (besides `other_than`), waited for up to 15 s."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        pids = [pid for pid in await listener_pids(resources) if pid != other_than]
        if len(pids) == 1:
            return pids[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no single listener connection (besides {other_than})")
