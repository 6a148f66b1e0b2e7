"""Pages that update themselves (refit/dashboard/static/live.js): the page polls its own URL
every second with the stamp of what it shows (header `X-Live-Stamp`); the server answers 204
when nothing changed, else the page anew, whose `data-live` regions the script swaps in.

The order page's stamp is one small query (its row, its payout, how many history rows,
photos and carrier events it has): an unchanged order costs no rendering. The queue's is a
digest of its rendered list: its own two queries are the cost of a look."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from dataclasses import dataclass

from fastapi import Request, Response
from sqlalchemy import ScalarSelect, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from refit.models import Operator, Order, OrderStatusHistory
from refit.models.inspection import EvidencePhoto, Inspection
from refit.models.payout import Payout
from refit.models.shipping import ShippingEvent

HEADER = "X-Live-Stamp"


@dataclass(frozen=True)
class OrderGlance:
    stamp: str
    since: dt.datetime
    claimed_by: uuid.UUID | None
    claimed_by_name: str | None
    claimed_at: dt.datetime | None


def _count(model: type[OrderStatusHistory | EvidencePhoto | ShippingEvent]) -> ScalarSelect[int]:
    return (
        select(func.count())
        .select_from(model)
        .where(model.order_id == Order.id)
        .correlate(Order)
        .scalar_subquery()
    )


async def order_glance(session: AsyncSession, order_id: uuid.UUID) -> OrderGlance | None:
    row = (
        await session.execute(
            select(
                Order.updated_at,
                Order.status_changed_at,
                Order.claimed_by,
                Order.claimed_at,
                Operator.username,
                Payout.updated_at,
                Payout.status,
                select(Inspection.id)
                .where(Inspection.order_id == Order.id)
                .correlate(Order)
                .scalar_subquery(),
                _count(OrderStatusHistory),
                _count(EvidencePhoto),
                _count(ShippingEvent),
            )
            .outerjoin(Operator, Operator.id == Order.claimed_by)
            .outerjoin(Payout, Payout.order_id == Order.id)
            .where(Order.id == order_id)
        )
    ).one_or_none()
    if row is None:
        return None
    return OrderGlance(
        stamp=digest("|".join(str(v) for v in row)),
        since=row[1],
        claimed_by=row[2],
        claimed_at=row[3],
        claimed_by_name=row[4],
    )


def digest(text: str) -> str:
    return hashlib.blake2s(text.encode(), digest_size=12).hexdigest()


def unchanged(request: Request, stamp: str) -> Response | None:
    """204 when the page polling already shows `stamp`."""
    if request.headers.get(HEADER) == stamp:
        return Response(status_code=204, headers={"Cache-Control": "no-store", HEADER: stamp})
    return None
