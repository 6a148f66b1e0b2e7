"""The red team on the sellers' read pool (refit/hot_path.py): no RESET on release, so a
function that fails half way (after it took the seller's role and claims) must leave nothing
behind on the pooled connection for the next seller's read. Attacked with an error raised
inside the function after its set_config, a statement cancelled at the statement timeout, and
a read whose caller went away, each on a pool of one connection. Refusal: the next read runs
as the service with no claims, and the next seller sees their own order, never the previous
seller's."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from sqlalchemy import text

from refit.hot_path import HotPath, HotPathDown
from tests.orders.helpers import place_order

_WHO = (
    "SELECT current_user AS who, current_setting('role') AS role,"
    " coalesce(current_setting('request.jwt.claims', true), '') AS claims,"
    " coalesce(current_setting('request.jwt.claim.sub', true), '') AS sub"
)


async def _left_clean(pool: HotPath, login: str, *sellers: uuid.UUID) -> None:
    found = await pool.row(_WHO)
    assert found is not None
    assert found["who"] == login, dict(found)
    assert found["role"] == "none", dict(found)
    for seller in sellers:
        assert str(seller) not in found["claims"] + found["sub"], dict(found)


@pytest.mark.timeout(120)
async def test_a_function_that_fails_half_way_leaves_no_role_or_claims_behind(
    client, resources, settings, make_user
):
    alice, bob = await make_user(), await make_user()
    hers = uuid.UUID((await place_order(client, resources, alice))["id"])
    his = uuid.UUID((await place_order(client, resources, bob))["id"])
    pool = HotPath(
        settings.model_copy(update={"db_seller_read_pool_size": 1, "db_statement_timeout_ms": 1000})
    )

    async def detail(seller: uuid.UUID, order: uuid.UUID) -> str | None:
        found = await pool.row("SELECT detail FROM seller_order_json($1, $2)", seller, order)
        return json.loads(found["detail"])["id"] if found and found["detail"] else None

    try:
        login = (await pool.row("SELECT current_user"))[0]  # type: ignore[index]
        assert await detail(alice.id, hers) == str(hers)

        # 1. An error inside the function, after its set_config: the seller's role may not
        #    read a table the function reads.
        async with resources.engine.begin() as conn:
            await conn.execute(text("REVOKE SELECT ON inspections FROM authenticated"))
        try:
            with pytest.raises(Exception, match="permission denied"):
                await detail(alice.id, hers)
        finally:
            async with resources.engine.begin() as conn:
                await conn.execute(text("GRANT SELECT ON inspections TO authenticated"))
        await _left_clean(pool, login, alice.id)
        assert await detail(bob.id, hers) is None
        assert await detail(bob.id, his) == str(his)

        # 2. Cancelled at the statement timeout while the function waits on a lock, after
        #    its set_config.
        async with resources.sessionmaker() as holder, holder.begin():
            await holder.execute(text("LOCK TABLE order_status_history IN ACCESS EXCLUSIVE MODE"))
            with pytest.raises(HotPathDown):
                await detail(alice.id, hers)
        await _left_clean(pool, login, alice.id)
        assert await detail(bob.id, hers) is None
        assert await detail(bob.id, his) == str(his)

        # 3. The caller went away (the client hung up) while the function waited.
        async with resources.sessionmaker() as holder, holder.begin():
            await holder.execute(text("LOCK TABLE order_status_history IN ACCESS EXCLUSIVE MODE"))
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(detail(alice.id, hers), 0.3)
        await _left_clean(pool, login, alice.id)
        assert await detail(bob.id, hers) is None
        assert await detail(bob.id, his) == str(his)

        # 4. The list, cancelled the same way, then another seller's list.
        async with resources.sessionmaker() as holder, holder.begin():
            await holder.execute(text("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE"))
            with pytest.raises(HotPathDown):
                await pool.fetch("SELECT id FROM seller_orders_page($1, 10, NULL, NULL)", alice.id)
        await _left_clean(pool, login, alice.id)
        page = await pool.fetch("SELECT id FROM seller_orders_page($1, 10, NULL, NULL)", bob.id)
        assert [row["id"] for row in page] == [his]
    finally:
        await pool.close()
