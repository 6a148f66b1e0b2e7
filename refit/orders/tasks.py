"""Scheduled order sweeps: unshipped orders expire, unanswered revised offers lapse.

Each order moves in its own short transaction through `transition()`, which re-checks the
status under the row lock: an order the seller shipped a moment ago is skipped, not cancelled.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import structlog
from sqlalchemy import and_, or_, select

from refit import queue, resources
from refit.errors import Conflict, NotFound
from refit.models.order import Order, OrderStatus
from refit.orders.service import get_order, transition
from refit.transactions import service_transaction

log = structlog.get_logger(__name__)

S = OrderStatus
BATCH = 200


async def _due(where: object, limit: int) -> list[uuid.UUID]:
    async with service_transaction(job=True) as session:
        rows = await session.scalars(select(Order.id).where(where).limit(limit))  # type: ignore[arg-type]
        return list(rows.all())


async def expire_unshipped(now: dt.datetime | None = None) -> int:
    """Cancel orders not in transit `order_unshipped_expiry_days` after their label was bought
    (awaiting_shipment), or after they were placed when no label was ever bought (pending).
    The cancellation's follow-up refunds an unused label."""
    settings = resources.current().settings
    cutoff = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(
        days=settings.order_unshipped_expiry_days
    )
    due = or_(
        and_(Order.status == S.AWAITING_SHIPMENT, Order.label_purchased_at < cutoff),
        and_(Order.status == S.PENDING, Order.created_at < cutoff),
    )
    return await _sweep(
        due,
        S.CANCELLED,
        actor="system:orders.expire_unshipped",
        notes=f"not shipped within {settings.order_unshipped_expiry_days} days",
        expected_from={S.AWAITING_SHIPMENT, S.PENDING},
    )


async def expire_offers(now: dt.datetime | None = None) -> int:
    """Revised offers unanswered by offer_expires_at go back to the seller (returning): the
    default is to return the device, never to accept for the seller."""
    moment = now or dt.datetime.now(dt.UTC)
    due = and_(
        Order.status == S.OFFER_PENDING,
        Order.offer_accepted_at.is_(None),
        Order.offer_expires_at < moment,
    )
    return await _sweep(
        due,
        S.RETURNING,
        actor="system:orders.expire_offers",
        notes="the revised offer was not answered in time",
        expected_from={S.OFFER_PENDING},
        expires_before=moment,
    )


async def _sweep(due: object, to_status: OrderStatus, **move: Any) -> int:
    """Move every order matching `due`, a batch at a time, each in its own transaction."""
    moved_in_all = 0
    while ids := await _due(due, BATCH):
        moved = 0
        for order_id in ids:
            moved += await _move(order_id, to_status, **move)
        moved_in_all += moved
        if moved == 0:
            break  # every one raced with the seller: the next sweep looks again
    return moved_in_all


async def _move(
    order_id: uuid.UUID,
    to_status: OrderStatus,
    *,
    actor: str,
    notes: str,
    expected_from: set[OrderStatus],
    expires_before: dt.datetime | None = None,
) -> int:
    try:
        async with service_transaction(job=True) as session:
            if expires_before is not None:
                order = await get_order(session, order_id, for_update=True)
                # Under the lock: an offer accepted since the query no longer lapses.
                if (
                    order.offer_accepted_at is not None
                    or order.offer_expires_at is None
                    or order.offer_expires_at >= expires_before
                ):
                    return 0
            await transition(
                session, order_id, to_status, actor=actor, notes=notes, expected_from=expected_from
            )
    except (Conflict, NotFound):
        log.info("orders.sweep_skipped", order_id=str(order_id), to_status=to_status.value)
        return 0
    return 1


@queue.queue.periodic(cron="*/10 * * * *")
@queue.queue.task(
    name="orders.expire_stale",
    queueing_lock="orders.expire_stale",
    retry=queue.exponential_retry(3),
)
async def expire_stale_task(timestamp: int) -> dict[str, int]:
    result = {"cancelled": await expire_unshipped(), "returning": await expire_offers()}
    log.info("orders.expired", **result)
    return result
