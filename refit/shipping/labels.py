"""Buying an order's label exactly once, from a queue job that may be retried or killed.

The rules that make it exactly-once:
1. Before calling the carrier, a `shipping_label_purchases` row ('started') is committed.
2. The carrier's transaction id is committed on the order (and that row) BEFORE waiting on it.
3. A later attempt that finds a transaction id waits on that transaction instead of buying.
4. A later attempt that finds a row still 'started' (the reply was lost: timeout, crash
   between the carrier's POST and our commit) waits until twice our carrier timeout has
   passed since that row, lists the carrier's transactions created around it (Shippo:
   GET /transactions?object_created_gt=…, every page) and adopts the one of that rate
   carrying `order:<id>`.
Network calls happen outside database transactions; the label and refund jobs of one order
never run at the same time (procrastinate `lock`, see tasks.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import structlog
from sqlalchemy import select

from refit import queue
from refit.carriers.interface import (
    Carrier,
    CarrierError,
    CarrierMessage,
    CarrierRejected,
    LabelTransaction,
    TransactionStatus,
    wait_for_transaction,
)
from refit.models import OrderStatus
from refit.models.shipping import LabelPurchase, PurchaseStatus
from refit.one_message import Step, job_messages
from refit.orders import follow_ups
from refit.orders.move_steps import LOCK_FOR_MOVE, locked_row, move_steps
from refit.orders.service import get_order, order_not_found
from refit.resources import Resources
from refit.shipping import state
from refit.shipping.label_snapshot import Snapshot, Started, take_snapshot
from refit.storage import content_type_for, label_key, label_storage
from refit.transactions import service_transaction

log = structlog.get_logger(__name__)

ACTOR = "system:shipping.purchase_label"
# How long one attempt waits on a QUEUED transaction before leaving it to the next attempt.
POLL_WITHIN_SECONDS = 60.0
# Slack around a lost purchase's search window: clock skew between our database and the
# carrier, and the moment between writing our row and the carrier creating its object.
SEARCH_MARGIN = dt.timedelta(minutes=10)


# The rate quote the label was bought at: what the order records it shipped by and cost.
_QUOTE = (
    "SELECT carrier, service, amount FROM shipping_rate_quotes "
    "WHERE order_id = %(order_id)s AND rate_id = %(rate_id)s"
)


class LabelPurchaseFailed(CarrierError):
    """The carrier answered ERROR for the transaction: no label was bought by it."""


def metadata_for(order_id: uuid.UUID) -> str:
    return f"order:{order_id}"


def settle_seconds(resources: Resources, age: float) -> float:
    """How long a purchase attempt `age` seconds old may still create a transaction: a request
    we gave up on (timeout) may still be running at the carrier. Only after twice our own
    timeout does "not listed" mean "not bought"."""
    return max(0.0, 2 * resources.settings.shippo_timeout_seconds - age)


async def find_lost(
    resources: Resources,
    carrier: Carrier,
    order_id: uuid.UUID,
    rate_id: str,
    since: dt.datetime,
    until: dt.datetime,
    *,
    metadata: str | None = None,
) -> list[LabelTransaction]:
    """Transactions that our attempts, written between `since` and `until`, may have created
    for this order and rate (labelled `metadata`, by default the inbound label's); ERROR ones
    left out, the best first (SUCCESS, then pending)."""
    metadata = metadata or metadata_for(order_id)
    settle = dt.timedelta(seconds=2 * resources.settings.shippo_timeout_seconds)
    listed = await carrier.find_transactions(
        rate_id,
        metadata=metadata,
        created_after=since - SEARCH_MARGIN,
        created_before=until + settle + SEARCH_MARGIN,
    )
    # Matched again here on both keys: whatever the carrier filtered, only ours counts.
    found = [
        t
        for t in listed
        if t.metadata == metadata
        and t.rate_id == rate_id
        and t.status is not TransactionStatus.ERROR
    ]
    found.sort(key=lambda t: (t.status is not TransactionStatus.SUCCESS, t.transaction_id))
    return found


def label_url_for(resources: Resources, order_id: uuid.UUID) -> str:
    # The order shows our own authenticated download URL, never the carrier's signed URL
    # (that one is kept in shipping_label_purchases for operators).
    return f"{resources.settings.public_url.rstrip('/')}/api/shipping/labels/{order_id}"


async def purchase(
    resources: Resources,
    carrier: Carrier,
    order_id: uuid.UUID,
    *,
    job_id: int | None,
    attempt: int,
) -> str:
    """One attempt of the label job. Returns what happened; raises to be retried."""
    snapshot = await take_snapshot(order_id, carrier, job_id=job_id, attempt=attempt)
    if isinstance(snapshot, str):
        return snapshot
    transaction = None
    if snapshot.transaction_id is None and snapshot.unanswered:
        transaction = await _recover(resources, carrier, order_id, snapshot)
    if snapshot.transaction_id is not None:
        transaction = await carrier.get_transaction(snapshot.transaction_id)
    # A purchase answered with a final status had it recorded with its transaction id.
    recorded = False
    if snapshot.started is not None:
        transaction = await _call(resources, carrier, order_id, snapshot.started)
        recorded = not transaction.status.pending
    elif transaction is None:
        transaction = await _buy(resources, carrier, order_id, snapshot.rate_id, job_id, attempt)
        if transaction is None:
            return "skipped: the order changed before the purchase"
        recorded = not transaction.status.pending
    if transaction.status.pending:
        transaction = await wait_for_transaction(carrier, transaction, within=POLL_WITHIN_SECONDS)
    if not recorded:
        await _record_status(order_id, transaction)
    if transaction.status is not TransactionStatus.SUCCESS:
        raise LabelPurchaseFailed(
            f"the carrier answered {transaction.status} for transaction "
            f"{transaction.transaction_id}",
            transaction.messages,
        )
    return await _complete(resources, carrier, order_id, transaction)


async def _recover(
    resources: Resources, carrier: Carrier, order_id: uuid.UUID, snapshot: Snapshot
) -> LabelTransaction | None:
    """An earlier attempt called the carrier and never heard back: did it buy anything?"""
    assert snapshot.unanswered_since is not None and snapshot.unanswered_until is not None
    settle = settle_seconds(resources, snapshot.unanswered_age)
    if settle > 0:
        log.info("shipping.recovery_waits", order_id=str(order_id), seconds=round(settle, 1))
        await asyncio.sleep(settle)
    # SUCCESS first, then still-pending ones; any extra would be refunded by an operator.
    found = await find_lost(
        resources,
        carrier,
        order_id,
        snapshot.rate_id,
        snapshot.unanswered_since,
        snapshot.unanswered_until,
    )
    adopted = found[0] if found else None
    async with service_transaction(job=True) as session:
        rows = (
            await session.scalars(
                select(LabelPurchase)
                .where(LabelPurchase.id.in_(snapshot.unanswered))
                .order_by(LabelPurchase.created_at.desc())
                .with_for_update()
            )
        ).all()
        for index, row in enumerate(rows):
            if adopted is not None and index == 0:
                await state.update_purchase(
                    session,
                    row_id=row.id,
                    status=PurchaseStatus.PENDING,
                    transaction_id=adopted.transaction_id,
                )
            else:
                await state.update_purchase(
                    session,
                    row_id=row.id,
                    status=PurchaseStatus.REJECTED,
                    messages=[
                        CarrierMessage(text="no transaction found at the carrier for this try")
                    ],
                )
        if adopted is not None:
            order = await get_order(session, order_id, for_update=True)
            await state.set_transaction(session, order, adopted.transaction_id)
    log.warning(
        "shipping.purchase_recovered",
        order_id=str(order_id),
        adopted=adopted.transaction_id if adopted else None,
        also_found=[t.transaction_id for t in found[1:]],
    )
    return adopted


async def _buy(
    resources: Resources,
    carrier: Carrier,
    order_id: uuid.UUID,
    rate_id: str,
    job_id: int | None,
    attempt: int,
) -> LabelTransaction | None:
    """Buy, recording the attempt first. None: the order no longer wants this rate."""
    async with service_transaction(job=True) as session:
        # Re-checked under the order's lock: since our snapshot the order may have gone back
        # to pending and a new purchase been asked for (purchases.request_label refuses that
        # while a row of ours is in flight, and this lock orders the two).
        order = await get_order(session, order_id, for_update=True)
        if order.status is not OrderStatus.PROCESSING_SHIPMENT or order.shipping_rate_id != rate_id:
            return None
        row = await state.start_purchase(
            session,
            order_id,
            carrier_name=carrier.name,
            rate_id=rate_id,
            job_id=job_id,
            attempt=attempt,
        )
        await session.flush()  # its id, from the database's default
        started = Started(row.id, rate_id)
    return await _call(resources, carrier, order_id, started)


async def _call(
    resources: Resources, carrier: Carrier, order_id: uuid.UUID, row: Started
) -> LabelTransaction:
    """The carrier's purchase, `row` (the attempt's 'started' row) committed: from here on a
    crash leaves a 'started' row for the next attempt to resolve. The answer is committed
    before anything else happens (a final one with its status: nothing to wait on)."""
    try:
        transaction = await carrier.purchase_label(
            row.rate_id,
            metadata=metadata_for(order_id),
            label_file_type=resources.settings.label_file_type,
        )
    except CarrierRejected as exc:
        # A definite refusal (4xx): nothing was bought.
        async with service_transaction(job=True) as session:
            await state.update_purchase(
                session, row_id=row.id, status=PurchaseStatus.REJECTED, messages=exc.messages
            )
        raise
    # Any other failure leaves the row 'started': the outcome is unknown.
    async with job_messages(queue.job_connections()) as recording:
        await recording.send(
            *state.transaction_answered_steps(order_id, row.id, transaction), commit=True
        )
    log.info(
        "shipping.transaction_created",
        order_id=str(order_id),
        transaction_id=transaction.transaction_id,
        status=transaction.status.value,
    )
    return transaction


async def _record_status(order_id: uuid.UUID, transaction: LabelTransaction) -> None:
    """Keep the purchase log in step; an ERROR transaction is let go so a retry buys anew."""
    status = (
        PurchaseStatus.SUCCEEDED
        if transaction.status is TransactionStatus.SUCCESS
        else PurchaseStatus.ERROR
    )
    async with service_transaction(job=True) as session:
        await state.update_purchase(
            session,
            of_transaction=transaction.transaction_id,
            status=status,
            messages=transaction.messages,
            label_url=transaction.label_url,
        )
        if transaction.status is not TransactionStatus.SUCCESS:
            order = await get_order(session, order_id, for_update=True)
            if order.label_transaction_id == transaction.transaction_id:
                await state.set_transaction(session, order, None)


async def _complete(
    resources: Resources, carrier: Carrier, order_id: uuid.UUID, transaction: LabelTransaction
) -> str:
    data = await carrier.download_label(transaction)
    key = label_key(order_id, transaction.transaction_id, resources.settings.label_file_type)
    # Stored before the order points at it; a crash here leaves a file a retry overwrites.
    await label_storage(resources.settings).put(key, data, content_type_for(key))
    ids = {"order_id": order_id, "rate_id": transaction.rate_id}
    async with job_messages(queue.job_connections()) as completing:
        orders, quotes = await completing.send(Step(LOCK_FOR_MOVE, ids), Step(_QUOTE, ids))
        if not orders:
            raise order_not_found(order_id)
        locked = locked_row(orders[0])
        steps = [
            state.record_label_step(
                locked.order,
                transaction,
                file_key=key,
                label_url=label_url_for(resources, order_id),
                quote=quotes[0] if quotes else None,
            )
        ]
        if locked.order.status == OrderStatus.PROCESSING_SHIPMENT:
            steps += move_steps(
                locked,
                OrderStatus.AWAITING_SHIPMENT,
                actor=ACTOR,
                metadata={
                    "transaction_id": transaction.transaction_id,
                    "tracking_number": transaction.tracking_number,
                },
                expected_from={OrderStatus.PROCESSING_SHIPMENT},
            )
            outcome = "label bought"
        else:
            # Cancelled while we were buying: the label is paid for and will never be used.
            steps.append(follow_ups.for_order(follow_ups.REFUND_LABEL, order_id).step())
            outcome = f"label bought for a {locked.order.status} order: refund queued"
        await completing.send(*steps, commit=True)
    return outcome


async def record_failure(order_id: uuid.UUID, exc: BaseException) -> None:
    """The last attempt failed: say so on the order, for the seller and the operators."""
    messages = getattr(exc, "messages", None) or []
    detail = "; ".join(m.text for m in messages) or str(exc) or type(exc).__name__
    async with service_transaction(job=True) as session:
        order = await get_order(session, order_id, for_update=True)
        if order.status != OrderStatus.PROCESSING_SHIPMENT or order.label_file_key:
            return
        await state.set_label_error(
            session,
            order,
            f"We could not buy your shipping label ({detail[:500]}). Our team sees this and "
            "will retry it; you do not need to do anything.",
        )
    log.error("shipping.label_failed", order_id=str(order_id), error=detail)
