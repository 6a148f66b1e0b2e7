"""An operator's moves on an order's labels, one door each: the JSON API (shipping/admin.py)
and the dashboard (dashboard/returns.py) call these, so a move is the same state change and
the same audit row (`operator_audit`, subject `order:<id>`, actor `operator:<id>`) from
either. Sending a device home (the label home) is inspection's `send_home`.

None of these calls the carrier: each checks the order under its row lock and queues the job
that does (a retry or refund never buys or refunds twice: the jobs resume what the carrier
already has). `refund_check` is the exception, a read of the carrier's view of the labels we
hold, asked before a refund is offered as possible.
"""

from __future__ import annotations

import datetime as dt
import uuid

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from refit.admin import audit
from refit.admin.deps import OperatorPrincipal
from refit.carriers.interface import Carrier, TransactionStatus
from refit.errors import Conflict
from refit.models import AuditOutcome, Order, OrderStatus
from refit.models.shipping import IN_FLIGHT, LabelPurchase, PurchaseStatus, ReturnStatus
from refit.orders import follow_ups
from refit.orders.service import get_order
from refit.shipping import state

log = structlog.get_logger(__name__)

S = OrderStatus


def subject(order_id: uuid.UUID) -> str:
    """How the audit trail names an order."""
    return f"order:{order_id}"


async def _record(
    session: AsyncSession, operator: OperatorPrincipal, action: str, order: Order, **detail: object
) -> None:
    await audit.record(
        session,
        operator.actor,
        action,
        subject(order.id),
        AuditOutcome.DONE,
        {"order_number": order.order_number, **detail},
    )


async def retry_label(
    session: AsyncSession, order_id: uuid.UUID, operator: OperatorPrincipal
) -> tuple[Order, int | None]:
    """Clear the label error and queue the label job again (it resumes any transaction the
    carrier already has for this order, so a retry never buys a second label). The job's id,
    None when one is already waiting."""
    order = await get_order(session, order_id, for_update=True)
    if order.status != S.PROCESSING_SHIPMENT:
        raise Conflict(
            f"Order {order.order_number} is {order.status}; only an order waiting for its "
            "label (processing_shipment) can have its label retried",
            code="invalid_order_state",
        )
    await state.set_label_error(session, order, None)
    job_id = await follow_ups.defer(session, follow_ups.PURCHASE_LABEL, order.id)
    await _record(session, operator, "order.retry_label", order, job_id=job_id)
    log.info(
        "shipping.label_retry", order_id=str(order.id), operator_id=str(operator.id), job_id=job_id
    )
    return order, job_id


async def refund_label(
    session: AsyncSession, order_id: uuid.UUID, operator: OperatorPrincipal
) -> tuple[Order, int | None]:
    """Queue the refund of a cancelled order's unused label again (the job refunds what is
    refundable and settles any purchase still in flight; a label already refunded is left
    alone)."""
    order = await get_order(session, order_id, for_update=True)
    _refuse_unless_cancelled(order)
    job_id = await follow_ups.defer(session, follow_ups.REFUND_LABEL, order.id)
    await _record(session, operator, "order.refund_label", order, job_id=job_id)
    log.info("shipping.refund_requested", order_id=str(order.id), operator_id=str(operator.id))
    return order, job_id


def _refuse_unless_cancelled(order: Order) -> None:
    if order.status is not S.CANCELLED:
        raise Conflict(
            f"Order {order.order_number} is {order.status}; only a cancelled order's label "
            "is refunded",
            code="invalid_order_state",
        )


async def refund_check(session: AsyncSession, carrier: Carrier, order_id: uuid.UUID) -> None:
    """Refuse (409 `label_not_refundable`) a refund that would do nothing: no label bought or
    being bought, or every one the carrier already refunded (or is refunding). Reads the
    carrier: `CarrierUnavailable` when it does not answer (nothing was changed). Takes no
    lock: `refund_label` decides again under the order's."""
    order = await get_order(session, order_id)
    _refuse_unless_cancelled(order)
    rows = (
        await session.execute(
            select(LabelPurchase.transaction_id, LabelPurchase.status).where(
                LabelPurchase.order_id == order_id,
                LabelPurchase.status.in_((*IN_FLIGHT, PurchaseStatus.SUCCEEDED)),
            )
        )
    ).all()
    if not rows:
        raise Conflict(
            "This order has no label to refund: none was bought, or it is refunded already",
            code="label_not_refundable",
        )
    held = [transaction_id for transaction_id, _ in rows]
    if None in held:
        return  # a purchase whose reply never came: the refund job settles it
    for transaction_id in filter(None, held):
        status = (await carrier.get_transaction(transaction_id)).status
        if not status.refund_asked and status is not TransactionStatus.ERROR:
            return
    raise Conflict(
        "The carrier already refunded this order's label, is refunding it, or refused its "
        "refund (or the purchase ended in an error): there is nothing left to refund",
        code="label_not_refundable",
    )


async def hand_over_return(
    session: AsyncSession, order_id: uuid.UUID, operator: OperatorPrincipal
) -> dt.datetime:
    """The parcel home left the warehouse with the carrier: who and when, on the return and in
    the audit trail. Not a status (the carrier's scans and its delivery move the order on).
    Once only; refused before the label home is bought."""
    order = await get_order(session, order_id, for_update=True)
    if order.status is not S.RETURNING:
        raise Conflict(
            f"Order {order.order_number} is {order.status}; only a returning order's parcel "
            "is handed to the carrier",
            code="invalid_order_state",
        )
    home = await state.return_of(session, order.id)
    if home is None or home.status not in (ReturnStatus.PURCHASED, ReturnStatus.DELIVERED):
        raise Conflict(
            f"The label home of order {order.order_number} is not bought yet",
            code="return_label_not_bought",
        )
    if home.handed_over_at is not None:
        raise Conflict(
            f"The parcel home of order {order.order_number} was handed to the carrier already",
            code="return_handed_over",
        )
    now = dt.datetime.now(dt.UTC)
    await state.update_return(
        session, home, status=home.status, handed_over_at=now, handed_over_by=operator.actor
    )
    await _record(
        session, operator, "order.return_handed_over", order, tracking_number=home.tracking_number
    )
    log.info("shipping.return_handed_over", order_id=str(order.id), operator_id=str(operator.id))
    return now
