"""The sellers' hot reads on their own pool (refit/hot_path.py, migration 0029): the
functions read under Row Level Security in the seller's role and leave the connection as they
found it; a read past the statement timeout, or a database that stops answering, is a 503
problem+json and the pool heals; a transaction pooler's setting (no prepared statements) works."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import uuid
from decimal import Decimal

import asyncpg
import pytest
from sqlalchemy import text as db_text

from refit import db
from refit.hot_path import HotPath, HotPathDown
from refit.models import Order
from refit.orders.schemas import OrderDetail, OrderRead
from tests.orders.helpers import page_beside_pydantics, place_order
from tests.resilience.test_db_timeouts import (
    SLACK_SECONDS,
    _app_behind_proxy,
    _app_with,
    _assert_dependency_down,
)


async def test_the_functions_read_under_rls_and_leave_the_connection_as_it_was(
    client, resources, settings, make_user
):
    alice, bob = await make_user(), await make_user()
    order = uuid.UUID((await place_order(client, resources, alice))["id"])
    assert settings.database_url
    connection = await asyncpg.connect(db.libpq_url(settings.database_url))
    try:
        login = await connection.fetchval("SELECT current_user")
        mine = await connection.fetchval(
            "SELECT detail FROM seller_order_json($1, $2)", alice.id, order
        )
        assert mine is not None and str(order) in mine
        # Bob asks for Alice's order by its id, and for his own list: RLS hides both.
        assert (
            await connection.fetchval("SELECT detail FROM seller_order_json($1, $2)", bob.id, order)
            is None
        )
        theirs = await connection.fetch(
            "SELECT id FROM seller_orders_page($1, 10, NULL, NULL)", bob.id
        )
        assert theirs == []
        # The role and claims were the statement's own transaction's: gone after it.
        after = await connection.fetchrow(
            "SELECT current_user, current_setting('request.jwt.claims', true) AS claims"
        )
        assert after["current_user"] == login
        assert not after["claims"]
    finally:
        await connection.close()


@pytest.mark.parametrize("role", ["anon", "authenticated"])
async def test_a_clients_role_cannot_call_the_functions(
    client, resources, settings, make_user, role
):
    """The functions act as whichever seller they are given: a client's own role (Supabase's
    PostgREST exposes functions as /rpc to `anon` and `authenticated`) may not call them."""
    alice = await make_user()
    order = uuid.UUID((await place_order(client, resources, alice))["id"])
    assert settings.database_url
    connection = await asyncpg.connect(db.libpq_url(settings.database_url))
    try:
        for call, args in [
            ("SELECT * FROM seller_order_json($1, $2)", (alice.id, order)),
            ("SELECT * FROM seller_orders_page($1, 10, NULL, NULL)", (alice.id,)),
        ]:
            async with connection.transaction():
                await connection.execute(f"SET LOCAL ROLE {role}")
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await connection.fetch(call, *args)
    finally:
        await connection.close()


async def test_without_prepared_statements_the_read_is_the_same(
    client, resources, settings, make_user
):
    """Behind a transaction pooler (REFIT_DB_PREPARED_STATEMENTS=false) nothing is kept on a
    connection between reads, and the answer does not change."""
    seller = await make_user()
    order = uuid.UUID((await place_order(client, resources, seller))["id"])
    pools = [
        HotPath(settings.model_copy(update={"db_prepared_statements": flag}))
        for flag in (True, False)
    ]
    try:
        answers = [
            await pool.row("SELECT detail FROM seller_order_json($1, $2)", seller.id, order)
            for pool in pools
        ]
    finally:
        for pool in pools:
            await pool.close()
    assert answers[0] is not None and answers[0]["detail"] is not None
    assert answers[0] == answers[1]


@pytest.mark.timeout(120)
async def test_a_read_past_the_statement_timeout_is_a_503_and_the_pool_heals(
    client, resources, settings, make_user, open_client
):
    seller = await make_user()
    order = (await place_order(client, resources, seller))["id"]
    async with _app_with(settings, open_client, db_statement_timeout_ms=1000) as http:
        assert (await http.get(f"/api/orders/{order}", headers=seller.headers)).status_code == 200
        # The order's row locked against the read? A read takes no lock: hold the function
        # itself up instead, with an exclusive lock on its history table.
        async with resources.sessionmaker() as holder, holder.begin():
            await holder.execute(
                db_text("LOCK TABLE order_status_history IN ACCESS EXCLUSIVE MODE")
            )
            started = time.monotonic()
            response = await http.get(f"/api/orders/{order}", headers=seller.headers)
            waited = time.monotonic() - started
        _assert_dependency_down(response)
        # Cancelled at the statement timeout, not left to hang.
        assert 1.0 <= waited < 1.0 + SLACK_SECONDS, waited
        again = await http.get(f"/api/orders/{order}", headers=seller.headers)
        assert again.status_code == 200, again.text


@pytest.mark.timeout(120)
async def test_a_database_that_stops_answering_is_a_503_and_the_pool_heals(
    client, resources, settings, make_user, open_client
):
    seller = await make_user()
    order = (await place_order(client, resources, seller))["id"]
    async with _app_behind_proxy(
        settings, open_client, db_connect_timeout_seconds=2, db_statement_timeout_ms=1000
    ) as (http, proxy):
        read = f"/api/orders/{order}"
        assert (await http.get(read, headers=seller.headers)).status_code == 200
        # Connections open, the server gone silent: each waits its bound, never forever.
        proxy.black_hole()
        started = time.monotonic()
        _assert_dependency_down(await http.get(read, headers=seller.headers))
        assert time.monotonic() - started < 2.0 + 1.0 + SLACK_SECONDS
        # Cut outright: refused connections, at once.
        proxy.cut()
        _assert_dependency_down(await http.get(read, headers=seller.headers))
        proxy.restore()
        back = await http.get(read, headers=seller.headers)
        assert back.status_code == 200, back.text
        listed = await http.get("/api/orders", headers=seller.headers)
        assert listed.status_code == 200 and listed.json()["items"][0]["id"] == order


def test_a_read_error_is_a_dependency_outage():
    from refit.errors import is_dependency_down

    assert is_dependency_down(HotPathDown("gone"))


@pytest.mark.timeout(120)
async def test_a_connection_that_died_while_idle_costs_no_error(
    client, resources, settings, make_user, open_client
):
    """The server restarted between two reads (every open connection dropped): the next read
    finds its pooled connection dead and is answered from a fresh one, not with a 503."""
    seller = await make_user()
    order = (await place_order(client, resources, seller))["id"]
    async with _app_behind_proxy(settings, open_client) as (http, proxy):
        read = f"/api/orders/{order}"
        assert (await http.get(read, headers=seller.headers)).status_code == 200
        proxy.cut()
        proxy.restore()
        again = await http.get(read, headers=seller.headers)
        assert again.status_code == 200, again.text
        assert proxy.accepted >= 2  # a new connection was opened for it


async def test_one_connection_alternating_sellers_after_cancel_and_discard(
    client, resources, settings, make_user
):
    """Attack: seller B's reads on the one pooled connection seller A's reads prepared the
    statements on (asyncpg's statement cache, plpgsql's cached plans), alternating past
    PostgreSQL's five custom plans, with a read cancelled mid-flight and a DISCARD ALL between
    them. Refusal: B never sees A's order, and the connection goes back as the service."""
    a, b = await make_user(), await make_user()
    a_order = uuid.UUID((await place_order(client, resources, a))["id"])
    b_order = uuid.UUID((await place_order(client, resources, b))["id"])
    pool = HotPath(settings.model_copy(update={"db_seller_read_pool_size": 1}))

    async def detail(user: uuid.UUID, order: uuid.UUID) -> list[str]:
        found = await pool.row("SELECT detail FROM seller_order_json($1, $2)", user, order)
        return [json.loads(found["detail"])["id"]] if found and found["detail"] else []

    async def listed(user: uuid.UUID) -> list[str]:
        page = await pool.fetch("SELECT id FROM seller_orders_page($1, 10, NULL, NULL)", user)
        return [str(row["id"]) for row in page]

    try:
        for round_ in range(8):
            assert await detail(a.id, a_order) == [str(a_order)], round_
            assert await detail(b.id, a_order) == [], round_
            assert await listed(b.id) == [str(b_order)], round_
            assert await detail(b.id, b_order) == [str(b_order)], round_
            assert await detail(a.id, b_order) == [], round_
            assert await listed(a.id) == [str(a_order)], round_
            if round_ == 2:
                # A read cancelled while PostgreSQL runs it (the client went away).
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(
                        pool.row("SELECT seller_order_json($1, $2), pg_sleep(5)", a.id, a_order),
                        0.3,
                    )
            if round_ == 4:
                connection = await pool._connections.take(5)
                await connection.execute("DISCARD ALL")
                pool._connections.give_back(connection, reusable=True)
        who = await pool.row(
            "SELECT current_user || ' '"
            " || coalesce(current_setting('request.jwt.claims', true), '')"
        )
        assert who is not None and not who[0].startswith("authenticated")
        assert str(a.id) not in who[0] and str(b.id) not in who[0]
    finally:
        await pool.close()


async def test_the_functions_answer_in_the_response_models_shape(client, resources, make_user):
    """The order's JSON is the model's input as it is: the same keys in the same order (a field
    added to OrderDetail and not to migration 0029 fails here) and the same values as the model
    made from the ORM row, amounts with their scale."""
    seller = await make_user()
    order_id = uuid.UUID((await place_order(client, resources, seller))["id"])
    detail = await resources.hot_path.row(
        "SELECT detail, plain FROM seller_order_json($1, $2)", seller.id, order_id
    )
    assert detail is not None and detail["plain"]
    assert list(json.loads(detail["detail"])) == list(OrderDetail.model_fields)
    async with resources.sessionmaker() as session:
        expected = OrderRead.model_validate(await session.get(Order, order_id))
    shown = OrderDetail.model_validate_json(detail["detail"])
    assert OrderRead.model_validate(shown.model_dump()) == expected


# Values set on the orders: control characters, quotes and non-ASCII text; amounts at zero
# and at their scale; timestamps on a whole second and with microseconds; device details of
# every kind (a big integer, a fraction, a nested object).
_ODD = [
    {
        "device_model": 'Pixel "7" \\ \n\t\x01 é 😀 </script> \u2028',
        "final_price_usd": "0.00",
        "final_price_sol": "0.0000",
        "shipped_at": "2026-12-07 10:00:00+00",
        "offer_expires_at": "2026-12-07 10:00:00.000001+00",
        "received_at": "1999-01-02 03:04:05.5+00",
        "device_details": {"colour": "black", "bb": 10, "a": True, "n": None},
    },
    # Past 64 bits: orjson cannot write it, pydantic's writer does (refit.orders.reads).
    {"device_details": {"big": 10**20, "small": -(2**63)}},
    {"device_details": {"weight": 1.50}},
    {"device_details": {"parts": {"screen": "cracked"}}},
    {"device_details": {}, "label_url": None, "tracking_number": "1Z\x7f"},
]


async def test_a_page_is_the_models_json_byte_for_byte(client, resources, make_user):
    """The list's page as written from PostgreSQL's typed rows (no model built per row) is
    what pydantic writes from the ORM rows, byte for byte, odd values included, on pages of
    one, two and all (cursors included)."""
    seller = await make_user()
    ids = [uuid.UUID((await place_order(client, resources, seller))["id"]) for _ in _ODD]
    async with resources.sessionmaker() as session, session.begin():
        for order_id, values in zip(ids, _ODD, strict=True):
            order = await session.get(Order, order_id)
            for name, value in values.items():
                if name.endswith("_at"):
                    value = dt.datetime.fromisoformat(value)
                elif name.startswith("final_price"):
                    value = Decimal(value)
                setattr(order, name, value)

    async def pages(size: int) -> list[tuple[bytes, bytes]]:
        """(our page, pydantic's page from the ORM rows) for each page."""
        found, cursor = [], None
        while True:
            body, expected, page = await page_beside_pydantics(resources, seller.id, size, cursor)
            found.append((body, expected))
            cursor = page["next_cursor"]
            if cursor is None:
                return found

    singles = await pages(1)
    for body, expected in singles + await pages(2) + await pages(10):
        assert body == expected
    assert len(singles) == len(_ODD)
