"""Buying an order's label exactly once, from a queue job that may be retried or killed.

The rules that make it exactly-once:
1. Before calling the carrier, a `shipping_label_purchases` row ('started') is committed.
2. The carrier's transaction id is committed on the order (and that row) BEFORE waiting on it.
   A SUCCESS, with nothing to wait on, is committed with the stored label that the order
   then points at (one transaction fewer), or alone when the label cannot be stored.
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
import uuid
from dataclasses import dataclass

import structlog

from refit import queue
from refit.carriers.interface import (
    Carrier,
    CarrierError,
    CarrierRejected,
    LabelTransaction,
    TransactionStatus,
    wait_for_transaction,
)
from refit.models import OrderStatus
from refit.models.shipping import PurchaseStatus
from refit.one_message import Step, job_messages
from refit.orders import follow_ups
from refit.orders.move_steps import LOCK_FOR_MOVE, locked_row, move_steps
from refit.orders.service import get_order, order_not_found
from refit.resources import Resources
from refit.shipping import lost_purchases, state
from refit.shipping.label_snapshot import Started, take_snapshot
from refit.storage import content_type_for, label_key, label_storage
from refit.transactions import service_transaction

log = structlog.get_logger(__name__)

ACTOR = "system:shipping.purchase_label"
# How long one attempt waits on a QUEUED transaction before leaving it to the next attempt.
POLL_WITHIN_SECONDS = 60.0


# The rate quote the label was bought at: what the order records it shipped by and cost.
_QUOTE = (
    "SELECT carrier, service, amount FROM shipping_rate_quotes "
    "WHERE order_id = %(order_id)s AND rate_id = %(rate_id)s"
)


class LabelPurchaseFailed(CarrierError):
    """The carrier answered ERROR for the transaction: no label was bought by it."""


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
        transaction = await lost_purchases.recover(resources, carrier, order_id, snapshot)
    if snapshot.transaction_id is not None:
        transaction = await carrier.get_transaction(snapshot.transaction_id)
    # A purchase answered with a final status had it recorded with its transaction id, or
    # has it to record with the label (`answer`).
    recorded = False
    answer: Answer | None = None
    if snapshot.started is not None:
        transaction, answer = await _call(resources, carrier, order_id, snapshot.started)
        recorded = not transaction.status.pending
    elif transaction is None:
        bought = await _buy(resources, carrier, order_id, snapshot.rate_id, job_id, attempt)
        if bought is None:
            return "skipped: the order changed before the purchase"
        transaction, answer = bought
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
    return await _complete(resources, carrier, order_id, transaction, answer)


async def _buy(
    resources: Resources,
    carrier: Carrier,
    order_id: uuid.UUID,
    rate_id: str,
    job_id: int | None,
    attempt: int,
) -> tuple[LabelTransaction, Answer | None] | None:
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


@dataclass(frozen=True)
class Answer:
    """A carrier's SUCCESS answer, not yet recorded: committed with the stored label
    (`_complete`: the attempt's row, the order pointing at the label and its transaction in
    one), or alone, the order pointing at the transaction, when the label cannot be stored."""

    order_id: uuid.UUID
    row_id: uuid.UUID
    transaction: LabelTransaction

    def alone(self) -> list[Step]:
        return state.transaction_answered_steps(self.order_id, self.row_id, self.transaction)

    def with_label(self) -> list[Step]:
        return [state.attempt_answered_step(self.row_id, self.transaction)]


async def _call(
    resources: Resources, carrier: Carrier, order_id: uuid.UUID, row: Started
) -> tuple[LabelTransaction, Answer | None]:
    """The carrier's purchase, `row` (the attempt's 'started' row) committed: from here on a
    crash leaves a 'started' row for the next attempt to resolve. An answer still pending or
    an ERROR is committed before anything else happens; a SUCCESS is returned unrecorded, to
    be committed with the stored label (one transaction fewer)."""
    try:
        transaction = await carrier.purchase_label(
            row.rate_id,
            metadata=lost_purchases.metadata_for(order_id),
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
    log.info(
        "shipping.transaction_created",
        order_id=str(order_id),
        transaction_id=transaction.transaction_id,
        status=transaction.status.value,
    )
    if transaction.status is TransactionStatus.SUCCESS:
        return transaction, Answer(order_id, row.id, transaction)
    async with job_messages(queue.job_connections()) as recording:
        await recording.send(
            *state.transaction_answered_steps(order_id, row.id, transaction), commit=True
        )
    return transaction, None


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
    resources: Resources,
    carrier: Carrier,
    order_id: uuid.UUID,
    transaction: LabelTransaction,
    answer: Answer | None,
) -> str:
    """The label stored and the order pointing at it, with `answer` when the carrier's
    SUCCESS is not yet recorded. Should that fail, the answer is committed alone: the next
    attempt starts from the transaction, not from a search of the carrier's (rule 4)."""
    try:
        return await _store_label(resources, carrier, order_id, transaction, answer)
    except BaseException:
        # A worker's shutdown cancels a job past its grace: the answer is kept then too.
        if answer is not None:
            await asyncio.shield(_record_alone(answer))
        raise


async def _record_alone(answer: Answer) -> None:
    async with job_messages(queue.job_connections()) as recording:
        await recording.send(*answer.alone(), commit=True)


async def _store_label(
    resources: Resources,
    carrier: Carrier,
    order_id: uuid.UUID,
    transaction: LabelTransaction,
    answer: Answer | None,
) -> str:
    data = await carrier.download_label(transaction)
    key = label_key(order_id, transaction.transaction_id, resources.settings.label_file_type)
    # Stored before the order points at it; a crash here leaves a file a retry overwrites.
    await label_storage(resources.settings).put(key, data, content_type_for(key))
    ids = {"order_id": order_id, "rate_id": transaction.rate_id}
    answered = answer.with_label() if answer is not None else []
    async with job_messages(queue.job_connections()) as completing:
        # The order locked first, then its attempt: the order the label job's other
        # transactions (the snapshot, a purchase) take them in.
        orders, quotes, *_ = await completing.send(
            Step(LOCK_FOR_MOVE, ids), Step(_QUOTE, ids), *answered
        )
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
