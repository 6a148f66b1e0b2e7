"""Claiming an order ("mine"): the operator working on it, so two people do not inspect the
same parcel. One door for `orders.claimed_by`/`claimed_at`; each claim, release and take-over
is recorded in the operators' audit trail (`order.claim`, `order.unclaim`, `order.take_over`)
in the transaction that makes it.

An order someone else claimed is refused (409 `order_claimed`, naming who) unless the caller
takes it over explicitly: a tap on the wrong card never takes work from a colleague."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from refit.admin import audit
from refit.admin.deps import OperatorPrincipal
from refit.errors import Conflict
from refit.models import Operator, Order, OrderStatus
from refit.orders.service import get_order

S = OrderStatus
# Nothing left to work on: claimed only while it needs a person's look (attention).
CLOSED = frozenset({S.COMPLETED, S.CANCELLED, S.IMPORTED})


def _subject(order: Order) -> str:
    return f"order:{order.id}"


async def _holder_name(session: AsyncSession, operator_id: uuid.UUID) -> str:
    name = await session.scalar(select(Operator.username).where(Operator.id == operator_id))
    return name or str(operator_id)


async def claim(
    session: AsyncSession, order_id: uuid.UUID, operator: OperatorPrincipal, *, take_over: bool
) -> Order:
    """The order is `operator`'s from now. Already theirs: nothing changes. Someone else's:
    409 `order_claimed` unless `take_over`."""
    order = await get_order(session, order_id, for_update=True)
    if order.claimed_by == operator.id:
        return order
    if order.status in CLOSED and order.attention_reason is None:
        raise Conflict(
            f"Order {order.order_number} is {order.status.value}: there is no work to claim",
            code="order_closed",
        )
    previous = order.claimed_by
    if previous is not None and not take_over:
        holder = await _holder_name(session, previous)
        raise Conflict(
            f"{holder} is working on order {order.order_number}: take it over if you mean to",
            code="order_claimed",
            extra={"claimed_by": holder},
        )
    now = await session.scalar(select(func.clock_timestamp()))
    order.claimed_by, order.claimed_at = operator.id, now
    await session.flush()
    action = "order.take_over" if previous is not None else "order.claim"
    detail = {"from": f"operator:{previous}"} if previous is not None else {}
    await audit.record(session, operator.actor, action, _subject(order), "done", detail)
    return order


async def unclaim(session: AsyncSession, order_id: uuid.UUID, operator: OperatorPrincipal) -> Order:
    """Let the order go. Only its holder does (another takes it over instead); an unclaimed
    order stays as it is."""
    order = await get_order(session, order_id, for_update=True)
    if order.claimed_by is None:
        return order
    if order.claimed_by != operator.id:
        holder = await _holder_name(session, order.claimed_by)
        raise Conflict(
            f"{holder} is working on order {order.order_number}; only they can let it go",
            code="order_claimed",
            extra={"claimed_by": holder},
        )
    order.claimed_by = None
    order.claimed_at = None
    await session.flush()
    await audit.record(session, operator.actor, "order.unclaim", _subject(order), "done")
    return order
