"""Small helpers shared by the shipping tests: readers of the database, and `time_passes`, the
one that writes (as time would)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import select, text

from refit.models import Order, OrderStatusHistory
from refit.models.shipping import LabelPurchase


async def label_jobs(resources, order_id=None):
    query = (
        "SELECT id, status, attempts, queueing_lock, lock, args FROM procrastinate_jobs "
        "WHERE task_name = 'shipping.purchase_label'"
    )
    params = {}
    if order_id is not None:
        query += " AND args ->> 'order_id' = :order_id"
        params["order_id"] = str(order_id)
    async with resources.sessionmaker() as session:
        return (await session.execute(text(query + " ORDER BY id"), params)).all()


async def make_due(resources) -> int:
    """Retries are scheduled seconds ahead (exponential backoff): bring them to now, as the
    passing of time would."""
    async with resources.sessionmaker() as session, session.begin():
        result = await session.execute(
            text(
                "UPDATE procrastinate_jobs SET scheduled_at = now() "
                "WHERE status = 'todo' AND scheduled_at > now()"
            )
        )
        return result.rowcount


async def order_row(resources, order_id) -> Order:
    async with resources.sessionmaker() as session:
        order = await session.get(Order, order_id)
        assert order is not None
        return order


async def history(resources, order_id) -> list[tuple[str | None, str, str]]:
    async with resources.sessionmaker() as session:
        rows = await session.scalars(
            select(OrderStatusHistory)
            .where(OrderStatusHistory.order_id == order_id)
            .order_by(OrderStatusHistory.created_at)
        )
        return [(r.from_status, r.status, r.actor) for r in rows]


async def purchases(resources, order_id) -> list[LabelPurchase]:
    async with resources.sessionmaker() as session:
        rows = await session.scalars(
            select(LabelPurchase)
            .where(LabelPurchase.order_id == order_id)
            .order_by(LabelPurchase.created_at)
        )
        return list(rows)


async def quote(client, seller, order_id) -> list[dict]:
    response = await client.post(
        "/api/shipping/rates", json={"order_id": str(order_id)}, headers=seller.headers
    )
    assert response.status_code == 200, response.text
    return response.json()["rates"]


async def buy(client, seller, order_id, rate_id, **headers):
    return await client.post(
        "/api/shipping/purchase-label",
        json={"order_id": str(order_id), "rate_id": rate_id},
        headers={**seller.headers, **headers},
    )


async def time_passes(resources, order_id, seconds: int) -> None:
    """As the passing of time would: the order's purchase attempts were made `seconds`
    earlier (past a settle window, say)."""
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            text(
                "UPDATE shipping_label_purchases "
                "SET created_at = created_at - make_interval(secs => :s) WHERE order_id = :id"
            ),
            {"s": seconds, "id": order_id},
        )


@asynccontextmanager
async def inbox_locked(resources) -> AsyncIterator[None]:
    """webhook_inbox locked by a transaction of its own while the block runs: every statement
    that writes it waits (an intake's statement "out")."""
    async with resources.sessionmaker() as holder, holder.begin():
        await holder.execute(text("LOCK TABLE webhook_inbox IN ACCESS EXCLUSIVE MODE"))
        yield
