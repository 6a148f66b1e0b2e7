"""Shipping jobs: buy a label, refund an unused one, buy the label home of a returning order,
and the sweep that re-queues stuck orders."""

from __future__ import annotations

import math
import uuid
from typing import Any

import procrastinate
import structlog
from procrastinate.jobs import Job
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from refit import metrics, queue, resources, sweeps
from refit.carriers.interface import CarrierError, TransactionStatus
from refit.carriers.picker import open_carrier
from refit.errors import is_dependency_down
from refit.log_setup import describe_error
from refit.models import Order, OrderStatus
from refit.models.shipping import IN_FLIGHT, LabelPurchase, PurchaseStatus
from refit.orders import follow_ups
from refit.orders.follow_ups import PURCHASE_LABEL, PURCHASE_RETURN_LABEL, REFUND_LABEL
from refit.shipping import labels, lost_purchases, returns, state
from refit.transactions import service_transaction

log = structlog.get_logger(__name__)

LABEL_ATTEMPTS = 3
# A carrier (or our database) that is down, slow or rate-limiting us is retried for longer:
# waits of 2, 4, 8 … 256 s, about eight and a half minutes in all. Past that, the order is
# left to the sweep (no label_error), which queues the job again, not parked for an operator.
LABEL_TRANSIENT_ATTEMPTS = 9
REFUND_ATTEMPTS = 5
# Waits of 3, 9, 27, 81 s: the device is ours to send back, no seller waits on a screen.
RETURN_ATTEMPTS = 5
# An order may sit in processing_shipment this long before the sweep looks at it.
SWEEP_GRACE_SECONDS = 120


def is_transient(exc: BaseException) -> bool:
    """Trouble that passes by itself: the carrier down, slow or rate-limiting, or our own
    PostgreSQL or Redis not answering."""
    return (isinstance(exc, CarrierError) and exc.retryable) or is_dependency_down(exc)


class LabelRetry(procrastinate.BaseRetryStrategy):
    """A definite failure (the carrier answered ERROR, a bug): LABEL_ATTEMPTS runs, then an
    operator. Transient trouble: up to LABEL_TRANSIENT_ATTEMPTS runs, waits growing to
    minutes, then the sweep."""

    definite = queue.exponential_retry(LABEL_ATTEMPTS, 2)
    transient = queue.exponential_retry(LABEL_TRANSIENT_ATTEMPTS, 2)

    def get_retry_decision(
        self, *, exception: BaseException, job: Job
    ) -> procrastinate.RetryDecision | None:
        strategy = self.transient if is_transient(exception) else self.definite
        return strategy.get_retry_decision(exception=exception, job=job)


@queue.queue.task(name=PURCHASE_LABEL.task, retry=LabelRetry(), pass_context=True)
async def purchase_label_task(context: procrastinate.JobContext, order_id: str) -> str:
    job = context.job
    assert job is not None
    attempt = job.attempts + 1
    res = resources.current()
    try:
        async with open_carrier(res.settings, job=True) as carrier:
            outcome = await labels.purchase(
                res, carrier, uuid.UUID(order_id), job_id=job.id, attempt=attempt
            )
    except Exception as exc:
        if is_transient(exc):
            if attempt >= LABEL_TRANSIENT_ATTEMPTS:
                # No label_error: the sweep queues the job again once the order has waited
                # SWEEP_GRACE_SECONDS, however long the outage lasts.
                log.warning(
                    "shipping.label_left_to_sweep", order_id=order_id, error=describe_error(exc)
                )
        elif attempt >= LABEL_ATTEMPTS:
            await labels.record_failure(uuid.UUID(order_id), exc)
        raise
    log.info("shipping.purchase_label_done", order_id=order_id, outcome=outcome)
    metrics.count_label_job(outcome)
    return outcome


@queue.queue.task(
    name=PURCHASE_RETURN_LABEL.task,
    retry=queue.exponential_retry(RETURN_ATTEMPTS, 3),
    pass_context=True,
)
async def purchase_return_label_task(context: procrastinate.JobContext, order_id: str) -> str:
    job = context.job
    assert job is not None
    res = resources.current()
    try:
        async with open_carrier(res.settings, job=True) as carrier:
            outcome = await returns.purchase(res, carrier, uuid.UUID(order_id))
    except Exception as exc:
        if job.attempts + 1 >= RETURN_ATTEMPTS:
            await returns.record_failure(uuid.UUID(order_id), exc)
        raise
    log.info("shipping.purchase_return_label_done", order_id=order_id, outcome=outcome)
    return outcome


class PurchaseNotSettled(CarrierError):
    """A purchase attempt that never heard back is younger than twice our carrier timeout: its
    transaction may still appear, so "not found" would not yet mean "not bought"."""

    def __init__(self, detail: str, *, settles_in: float) -> None:
        super().__init__(detail)
        self.settles_in = settles_in


class RefundRetry(procrastinate.BaseRetryStrategy):
    """Carrier trouble: exponential backoff, REFUND_ATTEMPTS runs in all. A purchase still
    settling: run again once it has settled, however long our carrier timeout is (it cannot
    repeat forever: a cancelled order gets no new purchase attempts)."""

    backoff = queue.exponential_retry(REFUND_ATTEMPTS, 3)

    def get_retry_decision(
        self, *, exception: BaseException, job: Job
    ) -> procrastinate.RetryDecision | None:
        if isinstance(exception, PurchaseNotSettled):
            return procrastinate.RetryDecision(
                retry_in={"seconds": math.ceil(exception.settles_in) + 1}
            )
        return self.backoff.get_retry_decision(exception=exception, job=job)


@queue.queue.task(name=REFUND_LABEL.task, retry=RefundRetry())
async def refund_label_task(order_id: str) -> str:
    """Refund the unused label of a cancelled order (and any purchase still in flight)."""
    res = resources.current()
    async with service_transaction(job=True) as session:
        order = await session.get(Order, uuid.UUID(order_id))
        if order is None or order.status != OrderStatus.CANCELLED:
            return "skipped: order not cancelled"
        rows = (
            await session.execute(
                select(
                    LabelPurchase.id,
                    LabelPurchase.rate_id,
                    LabelPurchase.transaction_id,
                    LabelPurchase.created_at,
                    func.extract("epoch", func.now() - LabelPurchase.created_at),
                ).where(
                    LabelPurchase.order_id == order.id,
                    LabelPurchase.status.in_((*IN_FLIGHT, PurchaseStatus.SUCCEEDED)),
                )
            )
        ).all()
    if not rows:
        return "nothing to refund"
    # Decide nothing while an unanswered attempt may still turn into a label (the same rule
    # as lost_purchases.recover): a refund run seconds after a timeout would otherwise mark it
    # rejected and the label that appears later would never be refunded.
    settles_in = max(
        (lost_purchases.settle_seconds(res, float(r[4])) for r in rows if r[2] is None), default=0.0
    )
    if settles_in > 0:
        raise PurchaseNotSettled(
            f"a purchase of order {order_id} may still be running at the carrier",
            settles_in=settles_in,
        )
    refunded = []
    async with open_carrier(res.settings, job=True) as carrier:
        for row_id, rate_id, transaction_id, started_at, _ in rows:
            if transaction_id is None:
                # An attempt that never heard back: look for what it may have bought.
                found = await lost_purchases.find_lost(
                    res, carrier, order.id, rate_id, started_at, started_at
                )
                if not found:
                    await _set_row(row_id, status=PurchaseStatus.REJECTED)
                    continue
                transaction_id = found[0].transaction_id
            transaction = await carrier.get_transaction(transaction_id)
            if transaction.status.pending:
                raise CarrierError(f"transaction {transaction_id} still {transaction.status}")
            if transaction.status.refund_asked:
                # An earlier run asked, and its record was lost with its transaction (a
                # crash or a failed commit after the carrier call): record the refund the
                # carrier holds, never ask for it again.
                status, refund_status = _REFUND_ASKED[transaction.status]
                asked = await carrier.find_refund(transaction_id)
                await _set_row(
                    row_id,
                    status=status,
                    transaction_id=transaction_id,
                    refund_id=asked.refund_id if asked else None,
                    refund_status=asked.status if asked else refund_status,
                )
                refunded.append(transaction_id)
                continue
            if transaction.status is not TransactionStatus.SUCCESS:
                await _set_row(row_id, status=PurchaseStatus.ERROR, transaction_id=transaction_id)
                continue
            refund = await carrier.refund_label(transaction_id)
            status = (
                PurchaseStatus.REFUNDED
                if refund.status == "SUCCESS"
                else PurchaseStatus.REFUND_PENDING
            )
            await _set_row(
                row_id,
                status=status,
                transaction_id=transaction_id,
                refund_id=refund.refund_id,
                refund_status=refund.status,
            )
            refunded.append(transaction_id)
    log.info("shipping.label_refunded", order_id=order_id, transactions=refunded)
    return f"refunded {len(refunded)}"


# A transaction whose refund was asked for already: what its purchase row becomes, and the
# refund's status when the carrier's refund object cannot be found.
_REFUND_ASKED = {
    TransactionStatus.REFUNDPENDING: (PurchaseStatus.REFUND_PENDING, "PENDING"),
    TransactionStatus.REFUNDED: (PurchaseStatus.REFUNDED, "SUCCESS"),
    TransactionStatus.REFUNDREJECTED: (PurchaseStatus.REFUND_REJECTED, "ERROR"),
}


async def _set_row(row_id: uuid.UUID, *, status: PurchaseStatus, **values: Any) -> None:
    async with service_transaction(job=True) as session:
        await state.update_purchase(session, row_id=row_id, status=status, **values)


async def _flag_order(session: AsyncSession, order_id: uuid.UUID, reason: str) -> None:
    order = await session.get(Order, order_id, with_for_update=True, populate_existing=True)
    if order is not None:
        await state.flag_for_operator(session, order, reason)


def _stuck_orders(follow_up: follow_ups.FollowUp, rows: str) -> sweeps.Stuck:
    """Orders `rows` ("orders o [JOIN …] WHERE …") names, unchanged since the grace, that need
    `follow_up` and have no job of it waiting or running."""
    return sweeps.Stuck(
        task=follow_up.task,
        rows=rows,
        row_id="o.id",
        since="o.updated_at",
        job_arg="order_id",
        requeue=lambda session, order_id: follow_ups.defer(session, follow_up, order_id),
        flag=_flag_order,
    )


STUCK_LABELS = _stuck_orders(
    PURCHASE_LABEL, "orders o WHERE o.status = 'processing_shipment' AND o.label_error IS NULL"
)
STUCK_RETURNS = _stuck_orders(
    PURCHASE_RETURN_LABEL,
    "orders o LEFT JOIN shipping_returns r ON r.order_id = o.id "
    "WHERE o.status = 'returning' AND (r.id IS NULL OR r.status IN ('started', 'pending'))",
)


@queue.queue.periodic(cron="*/2 * * * *")
@queue.queue.task(name="shipping.sweep_labels", queueing_lock="shipping.sweep_labels")
async def sweep_labels_task(timestamp: int) -> int:
    return await sweep_labels() + await sweep_returns()


async def sweep_labels(grace_seconds: int = SWEEP_GRACE_SECONDS) -> int:
    """Orders in processing_shipment with no error and no live label job get one again, so a
    lost job (a crash before it was written cannot happen, but a job deleted by hand, or one
    whose failure could not be recorded) never leaves a seller waiting forever; an order whose
    job keeps dying is flagged for an operator instead, past REFIT_SWEEP_MAX_ATTEMPTS."""
    return await sweeps.requeue_stuck(STUCK_LABELS, grace_seconds)


async def sweep_returns(grace_seconds: int = SWEEP_GRACE_SECONDS) -> int:
    """Orders in returning with no live return job and no label home bought get the job
    again, so no device is left without a way home. A return that failed for good is left to
    the operators it was flagged for (they retry it through POST …/return-label), as is one
    whose job keeps dying, past REFIT_SWEEP_MAX_ATTEMPTS."""
    return await sweeps.requeue_stuck(STUCK_RETURNS, grace_seconds)
