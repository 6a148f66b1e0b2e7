"""The device's way home: a label from the warehouse to the seller, bought exactly once.

An order entering `returning` (a declined or lapsed offer, an unbuyable device) defers
`shipping.purchase_return_label` (orders/follow_ups.py). The rules are the inbound label's
(labels.py), on the order's one `shipping_returns` row:
1. Rates are asked with no transaction open: from the warehouse to the order's address, the
   device's parcel, insured for its value, a signature above `signature_above_usd`
   (parcels.protection). The cheapest rate is bought.
2. The row ('started', the rate, the moment) is committed before the purchase call.
3. The carrier's transaction id is committed ('pending') before it is waited on; a later try
   that finds one waits on that transaction instead of buying.
4. A later try that finds the row still 'started' (the reply was lost: a timeout, a crash)
   waits until twice our carrier timeout has passed since that moment, lists the carrier's
   transactions around it and adopts the one of that rate labelled `return:<order id>`. Only
   when there is none is a label bought again.
The label is stored (`returns/<order id>/<transaction id>.pdf`) and the seller's "on its way
back" email is queued in the transaction that records the purchase, so it is sent once. The
job shares the inbound label's lock: no two label jobs of one order ever run together.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import structlog
from pydantic_core import to_jsonable_python
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from refit import queue
from refit.carriers.interface import (
    Address,
    Carrier,
    CarrierRejected,
    Extras,
    LabelTransaction,
    Parcel,
    TransactionStatus,
    wait_for_transaction,
)
from refit.models import Order, OrderStatus
from refit.models.shipping import ReturnShipment, ReturnStatus
from refit.orders import follow_ups
from refit.orders.service import get_order
from refit.resources import Resources
from refit.shipping import labels, lost_purchases, state
from refit.shipping.addresses import to_carrier_address
from refit.shipping.parcels import category_of, parcel_for, protection
from refit.shipping.rates import order_address, warehouse
from refit.storage import content_type_for, label_key, label_storage
from refit.transactions import service_transaction

log = structlog.get_logger(__name__)

# The seller's email once the label home is bought (notifications/templates/<name>/).
RETURN_LABEL_EMAIL = "order_return_label"
# The operators' flag when the job gave up; one line however often it gives up.
NEEDS_AN_OPERATOR = "the label home could not be bought (see the return's error)"
DONE = (ReturnStatus.PURCHASED, ReturnStatus.DELIVERED)


async def label_home_bought(session: AsyncSession, order_id: uuid.UUID) -> ReturnStatus | None:
    """The label home's status once it is bought (purchased or delivered), else None: a
    second is never asked for. Locks the row; the caller holds the order's lock too."""
    home = await state.return_of(session, order_id)
    return home.status if home is not None and home.status in DONE else None


def metadata_for(order_id: uuid.UUID) -> str:
    return f"return:{order_id}"


def return_label_key(order_id: uuid.UUID, transaction_id: str, file_type: str) -> str:
    # The inbound label's naming (and extension by file type), in a folder of its own.
    return "returns/" + label_key(order_id, transaction_id, file_type).removeprefix("labels/")


@dataclass(frozen=True)
class Snapshot:
    """What one try needs, read under the order's lock (plain values, no ORM rows)."""

    status: ReturnStatus | None
    rate_id: str | None
    transaction_id: str | None
    # When the latest purchase call was begun, and how many seconds ago (database clock).
    attempted_at: dt.datetime | None
    age: float
    address: Address
    parcel: Parcel
    extras: Extras


async def purchase(resources: Resources, carrier: Carrier, order_id: uuid.UUID) -> str:
    """One try of the return job. Returns what happened; raises to be retried."""
    snapshot = await _snapshot(resources, order_id)
    if isinstance(snapshot, str):
        return snapshot
    transaction = None
    if snapshot.transaction_id is not None:
        transaction = await carrier.get_transaction(snapshot.transaction_id)
    elif snapshot.status is ReturnStatus.STARTED:
        transaction = await _recover(resources, carrier, order_id, snapshot)
    if transaction is None:
        transaction = await _buy(resources, carrier, order_id, snapshot)
        if transaction is None:
            return "skipped: the order changed before the purchase"
    if transaction.status.pending:
        transaction = await wait_for_transaction(
            carrier, transaction, within=labels.POLL_WITHIN_SECONDS
        )
    if transaction.status is not TransactionStatus.SUCCESS:
        await _let_go(order_id, transaction)
        raise labels.LabelPurchaseFailed(
            f"the carrier answered {transaction.status} for transaction "
            f"{transaction.transaction_id}",
            transaction.messages,
        )
    return await _complete(resources, carrier, order_id, transaction)


async def _snapshot(resources: Resources, order_id: uuid.UUID) -> Snapshot | str:
    async with service_transaction(job=True) as session:
        order = await get_order(session, order_id, for_update=True)
        if order.status is not OrderStatus.RETURNING:
            return f"skipped: order is {order.status}"
        row = await state.return_of(session, order_id)
        if row is not None and row.status in DONE:
            return f"skipped: the label home is {row.status}"
        age = 0.0
        if row is not None and row.attempted_at is not None:
            age = float(await session.scalar(select(func.extract("epoch", func.now()))) or 0.0)
            age -= row.attempted_at.timestamp()
        address = await order_address(session, order)
        return Snapshot(
            status=row.status if row else None,
            rate_id=row.rate_id if row else None,
            transaction_id=row.transaction_id if row else None,
            attempted_at=row.attempted_at if row else None,
            age=age,
            address=to_carrier_address(address),
            parcel=parcel_for(category_of(order)),
            extras=protection(resources.settings, order, home=True),
        )


async def _recover(
    resources: Resources, carrier: Carrier, order_id: uuid.UUID, snapshot: Snapshot
) -> LabelTransaction | None:
    """An earlier try called the carrier and never heard back: did it buy anything?"""
    assert snapshot.attempted_at is not None and snapshot.rate_id is not None
    settle = lost_purchases.settle_seconds(resources, snapshot.age)
    if settle > 0:
        log.info("shipping.return_recovery_waits", order_id=str(order_id), seconds=round(settle))
        await asyncio.sleep(settle)
    found = await lost_purchases.find_lost(
        resources,
        carrier,
        order_id,
        snapshot.rate_id,
        snapshot.attempted_at,
        snapshot.attempted_at,
        metadata=metadata_for(order_id),
    )
    adopted = found[0] if found else None
    async with service_transaction(job=True) as session:
        await get_order(session, order_id, for_update=True)
        row = await _row(session, order_id)
        if adopted is not None:
            await state.update_return(
                session, row, status=ReturnStatus.PENDING, transaction_id=adopted.transaction_id
            )
        else:
            # Settled: "not listed" now means "not bought". A new label may be bought.
            await state.update_return(
                session,
                row,
                status=ReturnStatus.FAILED,
                error="the carrier never created the last try's label",
            )
    log.warning(
        "shipping.return_purchase_recovered",
        order_id=str(order_id),
        adopted=adopted.transaction_id if adopted else None,
        also_found=[t.transaction_id for t in found[1:]],
    )
    return adopted


async def _buy(
    resources: Resources, carrier: Carrier, order_id: uuid.UUID, snapshot: Snapshot
) -> LabelTransaction | None:
    """Rate, then buy the cheapest, recording the try first. None: no longer wanted."""
    settings = resources.settings
    shipment = await carrier.get_rates(
        warehouse(settings),
        snapshot.address,
        snapshot.parcel,
        metadata=metadata_for(order_id),
        extras=snapshot.extras,
    )
    if not shipment.rates:
        raise CarrierRejected("the carrier offers no service to the seller", shipment.messages)
    rate = min(shipment.rates, key=lambda r: r.amount)
    async with service_transaction(job=True) as session:
        # Re-checked under the order's lock: still going home, and nothing bought or in
        # flight since the snapshot.
        order = await get_order(session, order_id, for_update=True)
        row = await state.return_of(session, order_id)
        if order.status is not OrderStatus.RETURNING or (
            row is not None and row.status is not ReturnStatus.FAILED
        ):
            return None
        await state.start_return(
            session, order_id, row, carrier_name=carrier.name, rate=rate, extras=snapshot.extras
        )
    # Committed: from here on a crash leaves a 'started' row for the next try to resolve.
    try:
        transaction = await carrier.purchase_label(
            rate.rate_id, metadata=metadata_for(order_id), label_file_type=settings.label_file_type
        )
    except CarrierRejected as exc:
        # A definite refusal (4xx): nothing was bought.
        async with service_transaction(job=True) as session:
            await get_order(session, order_id, for_update=True)
            await state.update_return(
                session, await _row(session, order_id), status=ReturnStatus.FAILED, error=str(exc)
            )
        raise
    # Any other failure leaves the row 'started': the outcome is unknown.
    async with service_transaction(job=True) as session:
        await get_order(session, order_id, for_update=True)
        await state.update_return(
            session,
            await _row(session, order_id),
            status=ReturnStatus.PENDING,
            transaction_id=transaction.transaction_id,
            error=None,
        )
    log.info(
        "shipping.return_transaction_created",
        order_id=str(order_id),
        transaction_id=transaction.transaction_id,
        status=transaction.status.value,
    )
    return transaction


async def _let_go(order_id: uuid.UUID, transaction: LabelTransaction) -> None:
    """The carrier's transaction ended in ERROR: nothing bought, a retry buys anew."""
    detail = "; ".join(m.text for m in transaction.messages) or str(transaction.status)
    async with service_transaction(job=True) as session:
        await get_order(session, order_id, for_update=True)
        await state.update_return(
            session,
            await _row(session, order_id),
            status=ReturnStatus.FAILED,
            transaction_id=None,
            error=f"transaction {transaction.transaction_id}: {detail}"[:1000],
        )


async def _complete(
    resources: Resources, carrier: Carrier, order_id: uuid.UUID, transaction: LabelTransaction
) -> str:
    settings = resources.settings
    data = await carrier.download_label(transaction)
    key = return_label_key(order_id, transaction.transaction_id, settings.label_file_type)
    # Stored before the row points at it; a crash here leaves a file a retry overwrites.
    await label_storage(settings).put(key, data, content_type_for(key))
    async with service_transaction(job=True) as session:
        order = await get_order(session, order_id, for_update=True)
        row = await _row(session, order_id)
        if row.status in DONE:
            return f"skipped: the label home is {row.status}"
        await state.update_return(
            session,
            row,
            status=ReturnStatus.PURCHASED,
            transaction_id=transaction.transaction_id,
            tracking_number=transaction.tracking_number,
            label_file_key=key,
            label_url=transaction.label_url,
            purchased_at=dt.datetime.now(dt.UTC),
            error=None,
        )
        # In the transaction that records the purchase: the email exists iff the label does.
        await queue.defer(
            session,
            follow_ups.NOTIFY_USER,
            user_id=str(order.user_id),
            template=RETURN_LABEL_EMAIL,
            context=email_context(order, row),
        )
    log.info(
        "shipping.return_label_bought",
        order_id=str(order_id),
        transaction_id=transaction.transaction_id,
        tracking_number=transaction.tracking_number,
    )
    return "return label bought"


def email_context(order: Order, row: ReturnShipment) -> dict[str, Any]:
    """The order email's usual keys (follow_ups), with the parcel home's carrier and number,
    and what protects it. JSON: money as exact strings."""
    context = {
        "order_id": order.id,
        "order_number": order.order_number,
        "status": order.status,
        "from_status": None,
        "device": f"{order.device_brand} {order.device_model}",
        "quoted_price_usd": order.quoted_price_usd,
        "final_price_usd": order.final_price_usd,
        "offer_expires_at": order.offer_expires_at,
        "tracking_number": row.tracking_number,
        "shipping_carrier": row.carrier,
        "shipping_service": row.service,
        "insured_usd": row.insured_usd,
        "signature": row.signature,
        "attachments": [],
    }
    result: dict[str, Any] = to_jsonable_python(context)
    return result


async def record_failure(order_id: uuid.UUID, exc: BaseException) -> None:
    """The last try failed: say why on the return and flag the order for an operator, who
    retries it (POST /api/admin/orders/{id}/return-label)."""
    messages = getattr(exc, "messages", None) or []
    detail = "; ".join(m.text for m in messages) or str(exc) or type(exc).__name__
    async with service_transaction(job=True) as session:
        order = await get_order(session, order_id, for_update=True)
        row = await state.return_of(session, order_id)
        if order.status is not OrderStatus.RETURNING or (row is not None and row.status in DONE):
            return
        await state.return_failed(session, order_id, row, detail[:1000])
        await state.flag_for_operator(session, order, NEEDS_AN_OPERATOR)
    log.error("shipping.return_label_failed", order_id=str(order_id), error=detail)


async def _row(session: AsyncSession, order_id: uuid.UUID) -> ReturnShipment:
    row = await state.return_of(session, order_id)
    if row is None:
        raise LookupError(f"order {order_id} has no return row")
    return row
