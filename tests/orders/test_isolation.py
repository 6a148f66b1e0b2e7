"""Another seller's real order id: every order endpoint answers 404 and changes nothing, and
the database itself (Row Level Security) refuses the other seller's rows."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from refit.models import Order, OrderStatus, OrderStatusHistory
from refit.transactions import act_as_user
from tests.orders.helpers import operator_move, place_order

S = OrderStatus

# Each endpoint with the status in which its owner's call would succeed: a missing ownership
# check would show up as a move, not hide behind an invalid_transition.
ENDPOINTS = [
    ("GET", "", [S.PENDING]),
    ("GET", "/tracking", [S.SHIPPED]),
    ("POST", "/ship", [S.AWAITING_SHIPMENT]),
    ("POST", "/cancel", [S.PENDING]),
    ("POST", "/cancel", [S.AWAITING_SHIPMENT]),
    ("POST", "/offer/accept", [S.OFFER_PENDING]),
    ("POST", "/offer/decline", [S.OFFER_PENDING]),
]
PATHS = {
    S.PENDING: [],
    S.AWAITING_SHIPMENT: [S.PROCESSING_SHIPMENT, S.AWAITING_SHIPMENT],
    S.SHIPPED: [S.PROCESSING_SHIPMENT, S.AWAITING_SHIPMENT, S.SHIPPED],
    S.OFFER_PENDING: [
        S.PROCESSING_SHIPMENT,
        S.AWAITING_SHIPMENT,
        S.SHIPPED,
        S.RECEIVED,
        S.INSPECTING,
        S.OFFER_PENDING,
    ],
}


async def _snapshot(resources, order_id):
    async with resources.sessionmaker() as session:
        order = await session.get(Order, order_id)
        history = await session.scalar(
            select(func.count())
            .select_from(OrderStatusHistory)
            .where(OrderStatusHistory.order_id == order_id)
        )
    return order.status, order.updated_at, order.cancelled_at, order.shipped_at, history


@pytest.mark.parametrize(("method", "suffix", "state"), ENDPOINTS)
async def test_other_sellers_order_is_404_and_unchanged(
    client, resources, make_user, method, suffix, state
):
    alice, bob = await make_user(), await make_user()
    order = await place_order(client, resources, alice)
    order_id = uuid.UUID(order["id"])
    for step in PATHS[state[0]]:
        await operator_move(resources, order_id, step)
    before = await _snapshot(resources, order_id)

    response = await client.request(method, f"/api/orders/{order_id}{suffix}", headers=bob.headers)
    assert response.status_code == 404, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "order_not_found"
    assert await _snapshot(resources, order_id) == before

    # The same call by the owner is not a 404: the check above is about ownership.
    own = await client.request(method, f"/api/orders/{order_id}{suffix}", headers=alice.headers)
    assert own.status_code == 200, own.text


async def test_lists_hold_only_own_orders(client, resources, make_user):
    alice, bob = await make_user(), await make_user()
    await place_order(client, resources, alice)
    mine = await place_order(client, resources, bob)
    page = (await client.get("/api/orders", headers=bob.headers)).json()
    assert [o["id"] for o in page["items"]] == [mine["id"]]


async def test_database_refuses_other_sellers_rows(client, resources, make_user):
    alice, bob = await make_user(), await make_user()
    order = await place_order(client, resources, alice)
    order_id = uuid.UUID(order["id"])
    before = await _snapshot(resources, order_id)
    async with resources.sessionmaker() as session, session.begin():
        await act_as_user(session, bob.id)
        seen = await session.execute(text("SELECT id FROM orders WHERE id = :id"), {"id": order_id})
        assert seen.all() == []
        for table in ("order_status_history", "quotes", "shipping_events"):
            rows = await session.execute(text(f"SELECT count(*) FROM {table}"))
            assert rows.scalar() == 0, table
    # Writing Alice's order, or history for it, as Bob is refused outright: the seller role
    # writes no order of anyone's (tests/foundation/test_rls.py tries a seller's own).
    for statement in (
        "UPDATE orders SET status = 'cancelled', cancelled_at = now() WHERE id = :id",
        "SELECT id FROM orders WHERE id = :id FOR UPDATE",
        "INSERT INTO order_status_history (order_id, from_status, status, actor) "
        "VALUES (:id, 'pending', 'cancelled', 'user:bob')",
        "SELECT count(*) FROM idempotency_keys",
    ):
        async with resources.sessionmaker() as session:
            with pytest.raises(DBAPIError, match="permission denied"):
                async with session.begin():
                    await act_as_user(session, bob.id)
                    await session.execute(text(statement), {"id": order_id})
    # Quotes are written once and never changed, even by their owner: no UPDATE grant.
    async with resources.sessionmaker() as session:
        with pytest.raises(DBAPIError, match="permission denied for table quotes"):
            async with session.begin():
                await act_as_user(session, alice.id)
                await session.execute(
                    text("UPDATE quotes SET price_usd = 99999 WHERE id = :id"),
                    {"id": order["quote_id"]},
                )
    assert await _snapshot(resources, order_id) == before
