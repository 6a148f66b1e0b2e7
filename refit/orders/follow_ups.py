"""What follows a status change, declared as data beside the state table (states.py).

The jobs are named, not imported: the orders core defers `shipping.purchase_label` without
knowing the shipping code, so orders imports nothing from the domains around it. Every name
here is checked against the worker's registered tasks by a test.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from pydantic_core import to_jsonable_python
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from refit import queue
from refit.models.order import Order, OrderStatus
from refit.one_message import Step
from refit.storage import content_type_for

S = OrderStatus


@dataclass(frozen=True)
class FollowUp:
    """A job about one order: `queueing_lock` keeps one waiting job per order, `lock` keeps
    jobs sharing it from running at the same time ({order_id} is filled in)."""

    task: str
    queueing_lock: str
    lock: str | None = None


# The label and refund jobs of one order never overlap: a refund decides on what the purchase
# left behind.
_LABEL_LOCK = "label:{order_id}"
PURCHASE_LABEL = FollowUp("shipping.purchase_label", "purchase-label:{order_id}", _LABEL_LOCK)
REFUND_LABEL = FollowUp("shipping.refund_label", "refund-label:{order_id}", _LABEL_LOCK)
PURCHASE_RETURN_LABEL = FollowUp(
    "shipping.purchase_return_label", "return-label:{order_id}", _LABEL_LOCK
)

# (entered status, only when coming from one of these or from anywhere) -> jobs.
ON_ENTER: tuple[tuple[OrderStatus, frozenset[OrderStatus] | None, FollowUp], ...] = (
    (S.PROCESSING_SHIPMENT, None, PURCHASE_LABEL),
    # A label bought, or being bought, for a cancelled order is refunded; from
    # processing_shipment the purchase may be in flight: the refund job waits for it.
    (S.CANCELLED, frozenset({S.PROCESSING_SHIPMENT, S.AWAITING_SHIPMENT}), REFUND_LABEL),
    # The device goes home: an insured label from the warehouse to the seller.
    (S.RETURNING, None, PURCHASE_RETURN_LABEL),
)

# The email a seller gets when an order enters a status (notifications/templates/<name>/),
# sent to their verified address only.
NOTIFY_USER = "notifications.notify_user"
STATUS_EMAILS: dict[OrderStatus, str] = {
    S.AWAITING_SHIPMENT: "order_label_ready",
    S.SHIPPED: "order_shipped",
    S.RECEIVED: "order_received",
    S.OFFER_PENDING: "order_offer_pending",
    S.RETURNING: "order_returning",
    S.COMPLETED: "order_completed",
    S.CANCELLED: "order_cancelled",
}

TASK_NAMES = frozenset({f.task for _, _, f in ON_ENTER} | {NOTIFY_USER})


@dataclass(frozen=True)
class Deferral:
    """One job to queue: its task, locks and arguments, for `queue.defer` (the ORM's
    transaction) or `queue.defer_step` (a transaction sent as messages) alike."""

    task: str
    kwargs: dict[str, Any]
    queueing_lock: str | None = None
    lock: str | None = None

    async def defer(self, session: AsyncSession) -> int | None:
        return await queue.defer(
            session, self.task, queueing_lock=self.queueing_lock, lock=self.lock, **self.kwargs
        )

    def step(self) -> Step:
        return queue.defer_step(
            self.task, queueing_lock=self.queueing_lock, lock=self.lock, **self.kwargs
        )


def for_order(follow_up: FollowUp, order_id: uuid.UUID) -> Deferral:
    """`follow_up` about one order, its locks filled in."""
    return Deferral(
        follow_up.task,
        {"order_id": str(order_id)},
        queueing_lock=follow_up.queueing_lock.format(order_id=order_id),
        lock=follow_up.lock.format(order_id=order_id) if follow_up.lock else None,
    )


async def defer(session: AsyncSession, follow_up: FollowUp, order_id: uuid.UUID) -> int | None:
    """Queue `follow_up` for the order in the caller's transaction (None: one is waiting)."""
    return await for_order(follow_up, order_id).defer(session)


async def defer_now(session: AsyncSession, follow_up: FollowUp, order_id: uuid.UUID) -> int | None:
    """Queue `follow_up` for the order, or make the one already waiting (a retry scheduled
    ahead) due now. The job's id, or None when one is running and none waits."""
    job_id = await defer(session, follow_up, order_id)
    if job_id is None:
        job_id = await queue.hurry(session, follow_up.queueing_lock.format(order_id=order_id))
    return job_id


async def waiting_job(
    session: AsyncSession, follow_up: FollowUp, order_id: uuid.UUID
) -> int | None:
    """The job of `follow_up` waiting for the order (the move just made queued it)."""
    job_id: int | None = await session.scalar(
        text("SELECT id FROM procrastinate_jobs WHERE queueing_lock = :lock AND status = 'todo'"),
        {"lock": follow_up.queueing_lock.format(order_id=order_id)},
    )
    return job_id


async def after_move(
    session: AsyncSession,
    order: Order,
    from_status: OrderStatus | None,
    to_status: OrderStatus,
    *,
    notes: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> None:
    """Queue what follows the move, in its transaction: the jobs exist iff it commits."""
    for deferral in _after(order, from_status, to_status, notes, metadata):
        await deferral.defer(session)


def after_move_steps(
    order: Order,
    from_status: OrderStatus | None,
    to_status: OrderStatus,
    *,
    notes: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> list[Step]:
    """`after_move` as statements of a transaction sent as messages (queue.defer_step): the
    same jobs, with the same arguments."""
    return [d.step() for d in _after(order, from_status, to_status, notes, metadata)]


def _after(
    order: Order,
    from_status: OrderStatus | None,
    to_status: OrderStatus,
    notes: str | None,
    metadata: dict[str, Any] | None,
) -> list[Deferral]:
    """The jobs that follow the move. Its `notes` (an inspector's findings for a revised
    offer) go into the email, and so does a move to completed's `metadata`: the payout's
    receipt (payouts/receipt.py)."""
    deferrals = [
        for_order(follow_up, order.id)
        for entered, after, follow_up in ON_ENTER
        if to_status is entered and (after is None or from_status in after)
    ]
    template = STATUS_EMAILS.get(to_status)
    if template is not None:
        payment = metadata if to_status is S.COMPLETED else None
        context = _email_context(order, from_status, notes, payment=payment)
        kwargs = {"user_id": str(order.user_id), "template": template, "context": context}
        deferrals.append(Deferral(NOTIFY_USER, kwargs))
    return deferrals


def _email_context(
    order: Order,
    from_status: OrderStatus | None,
    notes: str | None = None,
    payment: dict[str, Any] | None = None,
) -> dict[str, Any]:
    # Job arguments are JSON: money as exact strings, times as ISO 8601.
    context = {
        "order_id": order.id,
        "order_number": order.order_number,
        "status": order.status,
        "from_status": from_status,
        "notes": notes,
        "device": f"{order.device_brand} {order.device_model}",
        "quoted_price_usd": order.quoted_price_usd,
        "final_price_usd": order.final_price_usd,
        "offer_expires_at": order.offer_expires_at,
        "tracking_number": order.tracking_number,
        "shipping_carrier": order.shipping_carrier,
        "payment": payment,
        # Files from refit.storage the send job attaches (by key: the job reads them outside
        # any transaction, and a missing one fails it rather than mail without the label).
        "attachments": [],
    }
    if order.status == S.AWAITING_SHIPMENT and order.label_file_key:
        extension = order.label_file_key.rsplit(".", 1)[-1]
        context["attachments"] = [
            {
                "storage_key": order.label_file_key,
                "filename": f"refit-label-{order.order_number}.{extension}",
                "content_type": content_type_for(order.label_file_key),
            }
        ]
    result: dict[str, Any] = to_jsonable_python(context)
    return result
