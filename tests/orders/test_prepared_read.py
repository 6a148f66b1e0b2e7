"""A read in one message as a prepared statement (refit/prepared.py; the order-event
streams read so): prepared once per connection as the service's role, then executed in each
seller's role under RLS, so one connection reused by two sellers shows each only their own
rows; a statement the connection lost is prepared again."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncEngine

from refit import one_message
from tests.orders.helpers import place_order
from tests.orders.one_connection import (  # noqa: F401
    ORDER_DETAIL,
    list_orders,
    one_connection,
    read_order,
)


async def _prepared_on(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as connection:
        rows = await connection.exec_driver_sql(
            "SELECT statement FROM pg_prepared_statements WHERE from_sql"
        )
        statements = [row[0] for row in rows]
        await connection.rollback()
    return statements


async def test_one_connection_shows_each_seller_only_their_own(
    client,
    resources,
    make_user,
    one_connection,  # noqa: F811
):
    seller, other = await make_user(), await make_user()
    mine = uuid.UUID((await place_order(client, resources, seller))["id"])
    theirs = uuid.UUID((await place_order(client, resources, other))["id"])

    async def read(user: uuid.UUID, order_id: uuid.UUID) -> list[uuid.UUID]:
        return await read_order(one_connection, user, order_id)

    async def listed(user: uuid.UUID, owner: uuid.UUID) -> list[uuid.UUID]:
        return await list_orders(one_connection, user, owner)

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
    client,
    resources,
    make_user,
    one_connection,  # noqa: F811
):
    seller = await make_user()
    mine = uuid.UUID((await place_order(client, resources, seller))["id"])
    query, params = ORDER_DETAIL, {"id": mine}
    first = await one_message.fetch_as_user(one_connection, seller.id, query, params)
    async with one_connection.connect() as connection:
        await connection.exec_driver_sql("DEALLOCATE ALL")
        await connection.commit()
    assert await _prepared_on(one_connection) == []
    again = await one_message.fetch_as_user(one_connection, seller.id, query, params)
    assert again == first and again[0]["id"] == mine
    assert len(await _prepared_on(one_connection)) == 1
