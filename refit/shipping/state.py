"""Shipping's one writer: every change to an order's shipping columns, to label purchase
attempts and to tracking events goes through here.

The shipping columns of `orders` (rate, carrier, label, tracking number, label error) belong
to shipping as `status` belongs to `orders.service.transition()`. Writes run as the service
(`db.as_service`): a seller's role may read these rows, never write them. Callers hold the
order's row lock (`orders.service.get_order(..., for_update=True)`) when they decide.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from refit import db
from refit.models import Order
from refit.shipping.carrier import CarrierMessage, LabelTransaction, Tracking
from refit.shipping.models import LabelPurchase, PurchaseStatus, RateQuote, ShippingEvent


async def choose_rate(session: AsyncSession, order: Order, quote: RateQuote) -> None:
    """The seller picked one of the order's quoted rates: the label job buys this one."""
    async with db.as_service(session):
        order.shipping_rate_id = quote.rate_id
        order.shipping_carrier = quote.carrier
        order.shipping_service = quote.service
        order.shipping_cost = quote.amount
        order.label_error = None


async def set_transaction(session: AsyncSession, order: Order, transaction_id: str | None) -> None:
    """The carrier transaction the label job waits on (None: let go of an ERROR one)."""
    async with db.as_service(session):
        order.label_transaction_id = transaction_id


async def set_label_error(session: AsyncSession, order: Order, message: str | None) -> None:
    """What the seller and operators are told when the label job gave up (None: cleared)."""
    async with db.as_service(session):
        order.label_error = message


async def record_label(
    session: AsyncSession,
    order: Order,
    transaction: LabelTransaction,
    *,
    file_key: str,
    label_url: str,
    quote: RateQuote | None,
) -> None:
    """The label is bought and stored: the order points at it."""
    async with db.as_service(session):
        order.label_transaction_id = transaction.transaction_id
        order.tracking_number = transaction.tracking_number
        order.label_file_key = file_key
        order.label_url = label_url
        order.label_purchased_at = dt.datetime.now(dt.UTC)
        order.label_error = None
        if quote is not None:
            order.shipping_carrier = quote.carrier
            order.shipping_service = quote.service
            order.shipping_cost = quote.amount


async def start_purchase(
    session: AsyncSession,
    order_id: uuid.UUID,
    *,
    carrier_name: str,
    rate_id: str,
    job_id: int | None,
    attempt: int,
) -> LabelPurchase:
    """The attempt's row, written (and committed by the caller) before the carrier call."""
    row = LabelPurchase(
        order_id=order_id,
        carrier_name=carrier_name,
        rate_id=rate_id,
        job_id=job_id,
        attempt=attempt,
        status=PurchaseStatus.STARTED,
    )
    async with db.as_service(session):
        session.add(row)
    return row


async def update_purchase(
    session: AsyncSession,
    *,
    row_id: uuid.UUID | None = None,
    of_transaction: str | None = None,
    status: PurchaseStatus,
    messages: list[CarrierMessage] | None = None,
    **fields: Any,
) -> None:
    """Move one attempt (`row_id`) or every attempt of a carrier transaction
    (`of_transaction`) on. `fields` are the other columns: transaction_id, label_url,
    refund_id, refund_status."""
    if (row_id is None) == (of_transaction is None):
        raise ValueError("name the attempt by row_id or by of_transaction")
    values: dict[str, Any] = {"status": status, **fields}
    if messages is not None:
        values["messages"] = [m.as_dict() for m in messages] or None
    where = (
        LabelPurchase.id == row_id
        if row_id is not None
        else LabelPurchase.transaction_id == of_transaction
    )
    async with db.as_service(session):
        await session.execute(update(LabelPurchase).where(where).values(**values))


async def record_tracking(
    session: AsyncSession,
    order_id: uuid.UUID,
    tracking: Tracking,
    *,
    source: str,
    raw: dict[str, Any] | None = None,
) -> list[ShippingEvent]:
    """Add the track's events the order does not have yet (same status at the same moment),
    normalised: status, substatus, location, description, when, and the carrier's ETA.
    Returns the new ones, oldest first."""
    async with db.as_service(session):
        rows = await session.execute(
            select(ShippingEvent.status, ShippingEvent.occurred_at).where(
                ShippingEvent.order_id == order_id
            )
        )
        known = {(status, at) for status, at in rows.all()}
        added = []
        for event in tracking.events:
            if (event.status, event.occurred_at) in known:
                continue
            known.add((event.status, event.occurred_at))
            added.append(
                ShippingEvent(
                    order_id=order_id,
                    event_type=source,
                    status=event.status,
                    substatus=event.substatus,
                    carrier_status=event.status.value,
                    location=event.location,
                    description=event.details,
                    eta=tracking.eta,
                    raw_data=raw,
                    occurred_at=event.occurred_at,
                )
            )
        session.add_all(added)
    return added
