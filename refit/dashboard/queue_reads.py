"""The work queue's reads: counts per status, and the orders waiting longest in theirs."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from refit.backoffice.reads import order_search
from refit.models import Order, OrderStatus, OrderStatusHistory, User

S = OrderStatus
# Nothing left to do for anyone: shown only when asked for. Imported history is never work.
FINAL = frozenset({S.COMPLETED, S.CANCELLED, S.IMPORTED})
QUEUE_LIMIT = 100


@dataclass(frozen=True)
class QueueRow:
    id: uuid.UUID
    order_number: str
    status: OrderStatus
    device: str
    quoted_price_usd: Decimal
    tracking_number: str | None
    wallet_address: str
    email: str | None
    attention_reason: str | None
    since: dt.datetime


async def status_counts(session: AsyncSession) -> dict[OrderStatus, int]:
    rows = await session.execute(select(Order.status, func.count()).group_by(Order.status))
    counts = {status: 0 for status in OrderStatus}
    counts.update({status: n for status, n in rows.all()})
    return counts


async def queue(
    session: AsyncSession, *, status: OrderStatus | None, q: str | None
) -> list[QueueRow]:
    """Orders in `status` (default: every open one) matching `q` (part of the order number,
    tracking number or email, the start of the wallet), the longest in their status first."""
    since = (
        select(func.max(OrderStatusHistory.created_at))
        .where(OrderStatusHistory.order_id == Order.id)
        .correlate(Order)
        .scalar_subquery()
    )
    query = select(Order, User.wallet_address, User.email, since.label("since")).join(
        User, User.id == Order.user_id
    )
    term = (q or "").strip()
    if status is not None:
        query = query.where(Order.status == status)
    elif not term:
        query = query.where(Order.status.not_in(FINAL))
    if term:
        query = query.where(order_search(term))
    query = query.order_by(since.asc().nulls_last(), Order.id).limit(QUEUE_LIMIT)
    rows = (await session.execute(query)).all()
    return [
        QueueRow(
            id=order.id,
            order_number=order.order_number,
            status=order.status,
            device=" ".join(
                p for p in (order.device_brand, order.device_model, order.device_storage) if p
            ),
            quoted_price_usd=order.quoted_price_usd,
            tracking_number=order.tracking_number,
            wallet_address=wallet,
            email=email,
            attention_reason=order.attention_reason,
            since=waiting_since or order.created_at,
        )
        for order, wallet, email, waiting_since in rows
    ]
