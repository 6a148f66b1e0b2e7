"""Shipping's one writer: every change to an order's shipping columns, to label purchase
attempts, to the label home (`shipping_returns`) and to tracking events goes through here.

The shipping columns of `orders` (rate, carrier, label, tracking number, label error) belong
to shipping as `status` belongs to `orders.service.transition()`. Writes run as the service
(`transactions.as_service`): a seller's role may read these rows, never write them. Callers hold the
order's row lock (`orders.service.get_order(..., for_update=True)`) when they decide.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from refit import transactions
from refit.carriers.interface import (
    CarrierMessage,
    Extras,
    LabelTransaction,
    Rate,
    Tracking,
    TransactionStatus,
)
from refit.models import Order
from refit.models.shipping import (
    LabelPurchase,
    Leg,
    PurchaseStatus,
    RateQuote,
    ReturnShipment,
    ReturnStatus,
    ShippingEvent,
)
from refit.one_message import Step


async def choose_rate(session: AsyncSession, order: Order, quote: RateQuote) -> None:
    """The seller picked one of the order's quoted rates: the label job buys this one."""
    async with transactions.as_service(session):
        order.shipping_rate_id = quote.rate_id
        order.shipping_carrier = quote.carrier
        order.shipping_service = quote.service
        order.shipping_cost = quote.amount
        order.label_error = None


async def set_transaction(session: AsyncSession, order: Order, transaction_id: str | None) -> None:
    """The carrier transaction the label job waits on (None: let go of an ERROR one)."""
    async with transactions.as_service(session):
        order.label_transaction_id = transaction_id


async def set_label_error(session: AsyncSession, order: Order, message: str | None) -> None:
    """What the seller and operators are told when the label job gave up (None: cleared)."""
    async with transactions.as_service(session):
        order.label_error = message


def record_label_step(
    order: Order,
    transaction: LabelTransaction,
    *,
    file_key: str,
    label_url: str,
    quote: Mapping[str, Any] | None,
) -> Step:
    """The label is bought and stored: the order points at it. One statement of a job's
    transaction sent as messages; `order` (as `orders.move_steps.locked_row` read it) is
    changed in memory the same way. `quote`: the rate quote's carrier, service and amount."""
    values: dict[str, Any] = {
        "label_transaction_id": transaction.transaction_id,
        "tracking_number": transaction.tracking_number,
        "label_file_key": file_key,
        "label_url": label_url,
        "label_purchased_at": dt.datetime.now(dt.UTC),
        "label_error": None,
    }
    if quote is not None:
        values["shipping_carrier"] = quote["carrier"]
        values["shipping_service"] = quote["service"]
        values["shipping_cost"] = quote["amount"]
    for name, value in values.items():
        setattr(order, name, value)
    assignments = ", ".join(f"{name} = %({name})s" for name in values)
    return Step(
        f"UPDATE orders SET {assignments} WHERE id = %(id)s",  # noqa: S608 (our column names)
        {**values, "id": order.id},
    )


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
    async with transactions.as_service(session):
        session.add(row)
    return row


# The label job's hot path writes through `one_message.job_messages` (a few statements a
# message, no ORM): the same writes as `start_purchase` and `update_purchase` with
# `set_transaction`, as statements of the job's transaction.


def start_purchase_step(
    order_id: uuid.UUID, *, carrier_name: str, job_id: int | None, attempt: int, when: str
) -> Step:
    """`start_purchase` for the order's chosen rate as one statement, which writes the row
    only `when` (SQL over the order, `o`) holds: it returns the row's id and rate, or none."""
    sql = (
        "INSERT INTO shipping_label_purchases (order_id, carrier_name, rate_id, job_id, "
        "attempt, status) SELECT o.id, %(carrier_name)s, o.shipping_rate_id, %(job_id)s, "
        "%(attempt)s, %(status)s FROM orders o WHERE o.id = %(order_id)s AND "
    )
    return Step(
        f"{sql}({when}) RETURNING id, rate_id",
        {
            "order_id": order_id,
            "carrier_name": carrier_name,
            "job_id": job_id,
            "attempt": attempt,
            "status": PurchaseStatus.STARTED.value,
        },
    )


def transaction_answered_steps(
    order_id: uuid.UUID, row_id: uuid.UUID, transaction: LabelTransaction
) -> list[Step]:
    """The carrier answered the attempt `row_id` with `transaction`: the order waits on it
    (`set_transaction`) and the attempt is recorded (`attempt_answered_step`). A final answer
    other than SUCCESS is not waited on, so the order never points at it."""
    steps = [attempt_answered_step(row_id, transaction)]
    if transaction.status.pending or transaction.status is TransactionStatus.SUCCESS:
        steps.insert(
            0,
            Step(
                "UPDATE orders SET label_transaction_id = %(transaction_id)s "
                "WHERE id = %(order_id)s",
                {"order_id": order_id, "transaction_id": transaction.transaction_id},
            ),
        )
    return steps


def attempt_answered_step(row_id: uuid.UUID, transaction: LabelTransaction) -> Step:
    """The attempt `row_id` answered with `transaction`: pending while the answer is; a final
    answer recorded at once (what `update_purchase(of_transaction=...)` would after the
    wait): succeeded or error, its label URL and messages."""
    status = PurchaseStatus.PENDING
    values: dict[str, Any] = {"transaction_id": transaction.transaction_id}
    if not transaction.status.pending:
        status = (
            PurchaseStatus.SUCCEEDED
            if transaction.status is TransactionStatus.SUCCESS
            else PurchaseStatus.ERROR
        )
        values["label_url"] = transaction.label_url
        messages = [m.as_dict() for m in transaction.messages]
        values["messages"] = Jsonb(messages) if messages else None
    assignments = ", ".join(f"{name} = %({name})s" for name in ["status", *values])
    return Step(
        f"UPDATE shipping_label_purchases SET {assignments} WHERE id = %(row_id)s",  # noqa: S608 (names are ours)
        {**values, "status": status.value, "row_id": row_id},
    )


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
    async with transactions.as_service(session):
        await session.execute(update(LabelPurchase).where(where).values(**values))


async def record_tracking(
    session: AsyncSession,
    order_id: uuid.UUID,
    tracking: Tracking,
    *,
    source: str,
    raw: dict[str, Any] | None = None,
    leg: Leg = Leg.INBOUND,
) -> list[ShippingEvent]:
    """Add the track's events the order's parcel (`leg`) does not have yet (same status at
    the same moment), normalised: status, substatus, location, description, when, and the
    carrier's ETA. Returns the new ones, oldest first."""
    async with transactions.as_service(session):
        rows = await session.execute(
            select(ShippingEvent.status, ShippingEvent.occurred_at).where(
                ShippingEvent.order_id == order_id, ShippingEvent.leg == leg
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
                    leg=leg,
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


async def flag_for_operator(session: AsyncSession, order: Order, reason: str) -> bool:
    """Ask a person to look at the order (a parcel returned, a carrier failure, a delivery
    elsewhere). The first reason's moment is kept; a new reason is added to the old ones.
    False: already flagged for this very reason."""
    if order.attention_reason and reason in order.attention_reason.split("\n"):
        return False
    async with transactions.as_service(session):
        order.attention_reason = (
            f"{order.attention_reason}\n{reason}" if order.attention_reason else reason
        )
        if order.attention_at is None:
            order.attention_at = dt.datetime.now(dt.UTC)
    return True


async def return_of(session: AsyncSession, order_id: uuid.UUID) -> ReturnShipment | None:
    """The order's label home, locked (callers hold the order's lock too)."""
    return await session.scalar(
        select(ReturnShipment)
        .where(ReturnShipment.order_id == order_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def start_return(
    session: AsyncSession,
    order_id: uuid.UUID,
    row: ReturnShipment | None,
    *,
    carrier_name: str,
    rate: Rate,
    extras: Extras,
) -> ReturnShipment:
    """The purchase about to be made (on the order's `row`, if it has one), written and
    committed by the caller before the carrier call, with its moment (the database's clock):
    a reply lost now is looked for around it."""
    async with transactions.as_service(session):
        if row is None:
            row = ReturnShipment(order_id=order_id)
            session.add(row)
        row.status = ReturnStatus.STARTED
        row.carrier_name = carrier_name
        row.rate_id = rate.rate_id
        row.carrier = rate.carrier
        row.service = rate.service
        row.cost = rate.amount
        row.insured_usd = extras.insurance_usd
        row.signature = extras.signature
        row.transaction_id = None
        row.attempted_at = await session.scalar(select(func.now()))
        await session.flush()
    return row


async def update_return(
    session: AsyncSession, row: ReturnShipment, *, status: ReturnStatus, **fields: Any
) -> None:
    """Move the label home on: `fields` are its other columns (transaction_id, error,
    tracking_number, label_file_key, label_url, purchased_at, delivered_at)."""
    async with transactions.as_service(session):
        row.status = status
        for name, value in fields.items():
            if not hasattr(ReturnShipment, name):
                raise ValueError(f"shipping_returns has no column {name}")
            setattr(row, name, value)


async def return_failed(
    session: AsyncSession, order_id: uuid.UUID, row: ReturnShipment | None, error: str
) -> ReturnShipment:
    """The return job gave up: say why (on the order's `row`, created if it has none). A
    purchase still in flight (started, pending) keeps its status, so the next try resolves
    it before buying anything."""
    async with transactions.as_service(session):
        if row is None:
            row = ReturnShipment(order_id=order_id, status=ReturnStatus.FAILED)
            session.add(row)
        elif row.status not in (ReturnStatus.STARTED, ReturnStatus.PENDING):
            row.status = ReturnStatus.FAILED
        row.error = error
        await session.flush()
    return row
