"""A pool of connections as the queue's pool makes them (refit.queue: autocommit, psycopg's
prepare_threshold set where REFIT_DB_PREPARED_STATEMENTS allows prepared statements), for
tests of `one_message.job_messages` and its prepared statements."""

from __future__ import annotations

from typing import Any

import psycopg_pool

from refit.db import libpq_url
from refit.settings import Settings


async def queue_like_pool(
    settings: Settings, *, prepare: bool = True, size: int = 1, **kwargs: Any
) -> psycopg_pool.AsyncConnectionPool:
    """`size` connections (one by default: every job meets the same one); `kwargs` go to
    each connection (options="-c lock_timeout=300", say)."""
    assert settings.database_url
    pool = psycopg_pool.AsyncConnectionPool(
        libpq_url(settings.database_url),
        min_size=size,
        max_size=size,
        open=False,
        kwargs={"autocommit": True, "prepare_threshold": 2 if prepare else None, **kwargs},
    )
    await pool.open(wait=True)
    return pool
