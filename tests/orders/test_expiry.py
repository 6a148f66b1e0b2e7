"""The scheduled sweeps: unshipped orders are cancelled, unanswered offers go back (returning).
Run through the real queue worker: the periodic task deferred as procrastinate would."""

from __future__ import annotations

import time
import uuid

from sqlalchemy import select, text, update

from refit import queue
from refit.models import Order, OrderStatus, OrderStatusHistory
from refit.orders import tasks
from refit.transactions import service_transaction
from tests.orders.helpers import operator_move, place_order

S = OrderStatus


async def _walk(resources, order_id, steps):
    for step in steps:
        await operator_move(resources, order_id, step)


async def _age(resources, order_id, **columns_days_ago):
    values = {c: text(f"now() - interval '{d} days'") for c, d in columns_days_ago.items()}
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(update(Order).where(Order.id == order_id).values(**values))


async def _state(resources, order_id):
    async with resources.sessionmaker() as session:
        order = await session.get(Order, order_id)
        last = await session.scalar(
            select(OrderStatusHistory)
            .where(OrderStatusHistory.order_id == order_id)
            .order_by(OrderStatusHistory.created_at.desc())
            .limit(1)
        )
    return order, last


async def _sweep(run_jobs):
    """Defer the periodic task as procrastinate's scheduler does, and let the worker run it."""
    async with service_transaction(job=True) as session:
        await queue.defer(session, tasks.expire_stale_task, timestamp=int(time.time()))
    await run_jobs()


async def test_unshipped_orders_expire(client, resources, make_user):
    seller = await make_user()
    ids = [uuid.UUID((await place_order(client, resources, seller))["id"]) for _ in range(5)]
    old_label, fresh_label, old_pending, fresh_pending, shipped = ids
    for order_id in (old_label, fresh_label, shipped):
        await _walk(resources, order_id, [S.PROCESSING_SHIPMENT, S.AWAITING_SHIPMENT])
    await operator_move(resources, shipped, S.SHIPPED)
    await _age(resources, old_label, label_purchased_at=31)
    await _age(resources, fresh_label, label_purchased_at=29)
    await _age(resources, old_pending, created_at=31)
    await _age(resources, fresh_pending, created_at=29)
    await _age(resources, shipped, label_purchased_at=60, created_at=60)

    assert await tasks.expire_unshipped() == 2

    for order_id in (old_label, old_pending):
        order, last = await _state(resources, order_id)
        assert order.status == "cancelled"
        assert order.cancelled_at == last.created_at
        assert last.actor == "system:orders.expire_unshipped"
        assert last.notes == "not shipped within 30 days"
    for order_id, status in (
        (fresh_label, "awaiting_shipment"),
        (fresh_pending, "pending"),
        (shipped, "shipped"),
    ):
        assert (await _state(resources, order_id))[0].status == status
    # Nothing left to do: a second sweep moves nothing.
    assert await tasks.expire_unshipped() == 0


async def test_unanswered_offers_go_back(client, resources, make_user):
    seller = await make_user()
    late = uuid.UUID((await place_order(client, resources, seller))["id"])
    on_time = uuid.UUID((await place_order(client, resources, seller))["id"])
    path = [
        S.PROCESSING_SHIPMENT,
        S.AWAITING_SHIPMENT,
        S.SHIPPED,
        S.RECEIVED,
        S.INSPECTING,
        S.OFFER_PENDING,
    ]
    for order_id in (late, on_time):
        await _walk(resources, order_id, path)
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            update(Order)
            .where(Order.id == late)
            .values(offer_expires_at=text("now() - interval '1 second'"))
        )

    assert await tasks.expire_offers() == 1

    order, last = await _state(resources, late)
    assert order.status == "returning"
    assert last.actor == "system:orders.expire_offers"
    assert (await _state(resources, on_time))[0].status == "offer_pending"
    response = await client.post(f"/api/orders/{late}/offer/accept", headers=seller.headers)
    assert response.status_code == 409


async def test_an_accepted_offer_does_not_lapse(client, resources, make_user):
    seller = await make_user()
    order_id = uuid.UUID((await place_order(client, resources, seller))["id"])
    await _walk(
        resources,
        order_id,
        [
            S.PROCESSING_SHIPMENT,
            S.AWAITING_SHIPMENT,
            S.SHIPPED,
            S.RECEIVED,
            S.INSPECTING,
            S.OFFER_PENDING,
        ],
    )
    accepted = await client.post(f"/api/orders/{order_id}/offer/accept", headers=seller.headers)
    assert accepted.status_code == 200
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            update(Order)
            .where(Order.id == order_id)
            .values(offer_expires_at=text("now() - interval '1 second'"))
        )

    assert await tasks.expire_offers() == 0
    assert (await _state(resources, order_id))[0].status == "offer_pending"


async def test_the_periodic_job_runs_both_sweeps(client, resources, make_user, run_jobs):
    seller = await make_user()
    order_id = uuid.UUID((await place_order(client, resources, seller))["id"])
    await _age(resources, order_id, created_at=45)
    await _sweep(run_jobs)
    order, last = await _state(resources, order_id)
    assert order.status == "cancelled"
    assert last.actor == "system:orders.expire_unshipped"
