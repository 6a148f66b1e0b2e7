"""Read side of orders: the seller's list (cursor pages), one order with its history."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from refit.models.order import Order, OrderStatusHistory
from refit.orders.schemas import (
    OrderDetail,
    OrderPage,
    OrderRead,
    StatusChange,
)
from refit.pagination import newest_first, page


async def list_orders(
    session: AsyncSession, user_id: uuid.UUID, *, limit: int, cursor: str | None
) -> OrderPage:
    """Newest first. Keyset pagination on (created_at, id): stable while orders are added."""
    query = newest_first(
        select(Order).where(Order.user_id == user_id), Order, limit=limit, cursor=cursor
    )
    orders, next_cursor = page((await session.scalars(query)).all(), limit)
    return OrderPage(items=[OrderRead.model_validate(o) for o in orders], next_cursor=next_cursor)


async def order_detail(session: AsyncSession, order: Order) -> OrderDetail:
    history = (
        await session.scalars(
            select(OrderStatusHistory)
            .where(OrderStatusHistory.order_id == order.id)
            .order_by(OrderStatusHistory.created_at, OrderStatusHistory.id)
        )
    ).all()
    return OrderDetail.model_validate(
        {
            **OrderRead.model_validate(order).model_dump(),
            "status_history": [StatusChange.model_validate(h) for h in history],
        }
    )
