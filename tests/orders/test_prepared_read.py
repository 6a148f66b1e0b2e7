"""The hot read as a prepared statement (refit/prepared_reads.py): prepared once per
connection as the service's role, then executed in each seller's role under RLS, so one
connection reused by two sellers shows each only their own rows; a statement the connection
lost is prepared again."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from refit import db, one_message
from refit.orders import reads
from refit.resources import Resources
from tests.orders.helpers import place_order


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


async def _prepared_on(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as connection:
        rows = await connection.exec_driver_sql(
            "SELECT statement FROM pg_prepared_statements WHERE from_sql"
        )
        statements = [row[0] for row in rows]
        await connection.rollback()
    return statements


async def test_one_connection_shows_each_seller_only_their_own(
    client, resources, make_user, one_connection
):
    seller, other = await make_user(), await make_user()
    mine = uuid.UUID((await place_order(client, resources, seller))["id"])
    theirs = uuid.UUID((await place_order(client, resources, other))["id"])
    page = reads._ORDER_PAGE.format(after="")

    async def read(user: uuid.UUID, order_id: uuid.UUID) -> list[uuid.UUID]:
        rows = await one_message.fetch_as_user(
            one_connection, user, reads._ORDER_DETAIL, {"id": order_id}
        )
        return [row["id"] for row in rows]

    async def listed(user: uuid.UUID, owner: uuid.UUID) -> list[uuid.UUID]:
        rows = await one_message.fetch_as_user(
            one_connection, user, page, {"user_id": owner, "limit": 10}
        )
        return [row["id"] for row in rows]

    for _ in range(7):  # past PostgreSQL's five custom plans, on to its generic one
        assert await read(seller.id, mine) == [mine]
        assert await read(seller.id, theirs) == []
        assert await read(other.id, mine) == []
        assert await read(other.id, theirs) == [theirs]
        assert await listed(seller.id, seller.id) == [mine]
        assert await listed(seller.id, other.id) == []
        assert await read(uuid.uuid4(), mine) == []
    prepared = await _prepared_on(one_connection)
    assert sum("FROM orders o WHERE o.id = $1" in text for text in prepared) == 1
    assert sum("WHERE o.user_id = $1" in text for text in prepared) == 1


async def test_a_statement_the_connection_lost_is_prepared_again(
    client, resources, make_user, one_connection
):
    seller = await make_user()
    mine = uuid.UUID((await place_order(client, resources, seller))["id"])
    query, params = reads._ORDER_DETAIL, {"id": mine}
    first = await one_message.fetch_as_user(one_connection, seller.id, query, params)
    async with one_connection.connect() as connection:
        await connection.exec_driver_sql("DEALLOCATE ALL")
        await connection.commit()
    assert await _prepared_on(one_connection) == []
    again = await one_message.fetch_as_user(one_connection, seller.id, query, params)
    assert again == first and again[0]["id"] == mine
    assert len(await _prepared_on(one_connection)) == 1
