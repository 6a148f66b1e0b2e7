"""One pooled connection for a read in one message (prepared statements on), and two reads
through it in the shape of the sellers' order and list reads: what the prepared-read tests and
the red team's attack on `one_message.fetch_as_user` share (the order-event streams read
through it). The sellers' own order and list reads moved to refit.hot_path; these queries
are the ones they ran before, kept as the attacks' subjects."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from refit import db, one_message
from refit.resources import Resources

ORDER_DETAIL = """
SELECT o.*, coalesce((
  SELECT json_agg(json_build_object('status', h.status, 'created_at', h.created_at)
                  ORDER BY h.created_at, h.id)
  FROM order_status_history h WHERE h.order_id = o.id), '[]') AS status_history
FROM orders o WHERE o.id = %(id)s
"""
ORDER_PAGE = """
SELECT o.* FROM orders o
WHERE o.user_id = %(user_id)s
ORDER BY o.created_at DESC, o.id DESC
LIMIT %(limit)s
"""


@pytest.fixture
async def one_connection(resources: Resources) -> AsyncIterator[AsyncEngine]:
    settings = resources.settings
    assert settings.database_url and settings.db_prepared_statements
    engine = db.create_engine(
        settings.database_url,
        pool_size=1,
        max_overflow=0,
        prepared_statements=True,
        ping_before_use=False,
        timeouts=db.Timeouts.from_settings(settings),
    )
    yield engine
    await engine.dispose()


async def read_order(engine: AsyncEngine, user: uuid.UUID, order_id: uuid.UUID) -> list[uuid.UUID]:
    """The ids `user` is shown reading order `order_id`."""
    rows = await one_message.fetch_as_user(engine, user, ORDER_DETAIL, {"id": order_id})
    return [row["id"] for row in rows]


async def list_orders(engine: AsyncEngine, user: uuid.UUID, owner: uuid.UUID) -> list[uuid.UUID]:
    """The ids `user` is shown listing `owner`'s orders (the first page)."""
    rows = await one_message.fetch_as_user(
        engine, user, ORDER_PAGE, {"user_id": owner, "limit": 10}
    )
    return [row["id"] for row in rows]
