"""Orders in the states the way-home and label buttons need, for the dashboard's tests: made
through the seller's API and the label job where that is quick, written into the tables where
how the order got there is another test's concern (as tests/shipping/test_returns.py does)."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import select, text, update

from refit.models import OperatorAudit, Order, OrderStatus
from refit.resources import Resources
from tests.orders.helpers import place_order
from tests.shipping.helpers import buy, order_row
from tests.shipping.helpers import quote as rates

# The label jobs' task names.
RETRY = "shipping.purchase_label"
REFUND = "shipping.refund_label"


async def label_bought(http: httpx.AsyncClient, resources: Resources, make_user, run_jobs) -> Any:
    """A pending order's sandbox label, bought by the label job: awaiting_shipment."""
    seller = await make_user()
    order = await place_order(http, resources, seller)
    rate = (await rates(http, seller, order["id"]))[0]["rate_id"]
    bought = await buy(http, seller, order["id"], rate)
    assert bought.status_code in (200, 202), bought.text
    await run_jobs()
    row = await order_row(resources, order["id"])
    assert row.status is OrderStatus.AWAITING_SHIPMENT and row.label_file_key
    return row


async def label_failed(http: httpx.AsyncClient, resources: Resources, make_user) -> Order:
    """An order whose label job gave up (processing_shipment, `label_error` set, its job
    failed), as the job leaves it after its last attempt."""
    seller = await make_user()
    order = await place_order(http, resources, seller)
    rate = (await rates(http, seller, order["id"]))[0]["rate_id"]
    bought = await buy(http, seller, order["id"], rate)
    assert bought.status_code in (200, 202), bought.text
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            text(
                "UPDATE procrastinate_jobs SET status = 'failed' "
                "WHERE task_name = 'shipping.purchase_label' AND args ->> 'order_id' = :id"
            ),
            {"id": order["id"]},
        )
        await session.execute(
            update(Order)
            .where(Order.id == uuid.UUID(order["id"]))
            .values(label_error="UPS API did not respond")
        )
    row = await order_row(resources, order["id"])
    assert row.status is OrderStatus.PROCESSING_SHIPMENT
    return row


async def offer_pending(http: httpx.AsyncClient, resources: Resources, make_user) -> Order:
    """An order inspected below its quote, the revised offer not answered yet."""
    seller = await make_user()
    order = await place_order(http, resources, seller)
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            update(Order)
            .where(Order.id == uuid.UUID(order["id"]))
            .values(
                status=OrderStatus.OFFER_PENDING,
                final_price_usd=Decimal("300.00"),
                offer_expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=14),
                tracking_number=f"9400{uuid.uuid4().int % 10**18:018d}",
                shipping_carrier="USPS",
            )
        )
    return await order_row(resources, order["id"])


async def trail(resources: Resources, order_id: uuid.UUID) -> list[tuple[str, str]]:
    """The audit trail of the order's label moves: (action, actor), oldest first."""
    async with resources.sessionmaker() as session:
        rows = await session.execute(
            select(OperatorAudit.action, OperatorAudit.actor)
            .where(OperatorAudit.subject == f"order:{order_id}")
            .order_by(OperatorAudit.at)
        )
        return [(action, actor) for action, actor in rows.all()]


async def jobs(resources: Resources, task: str, order_id: uuid.UUID) -> list[str]:
    async with resources.sessionmaker() as session:
        rows = await session.execute(
            text(
                "SELECT status FROM procrastinate_jobs WHERE task_name = :task "
                "AND args ->> 'order_id' = :id ORDER BY id"
            ),
            {"task": task, "id": str(order_id)},
        )
        return [r[0] for r in rows.all()]
