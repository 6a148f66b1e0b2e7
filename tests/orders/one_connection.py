"""One pooled connection for the hot read (prepared statements on), and the seller's two hot
reads through it: what the prepared-read tests and the red team's attack on it share."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from refit import db, one_message
from refit.orders import reads
from refit.resources import Resources


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
    """The ids `user` is shown reading order `order_id` (the order detail's read)."""
    rows = await one_message.fetch_as_user(engine, user, reads._ORDER_DETAIL, {"id": order_id})
    return [row["id"] for row in rows]


async def list_orders(engine: AsyncEngine, user: uuid.UUID, owner: uuid.UUID) -> list[uuid.UUID]:
    """The ids `user` is shown listing `owner`'s orders (the list's first page)."""
    page = reads._ORDER_PAGE.format(after="")
    rows = await one_message.fetch_as_user(engine, user, page, {"user_id": owner, "limit": 10})
    return [row["id"] for row in rows]
