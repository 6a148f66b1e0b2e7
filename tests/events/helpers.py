"""What the event tests read from the database to compare a stream with."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from refit.models import OrderStatusHistory
from refit.resources import Resources


async def history_rows(resources: Resources, order_id: Any) -> list[OrderStatusHistory]:
    """The order's history rows, in the order the stream sends them."""
    async with resources.sessionmaker() as session:
        rows = await session.scalars(
            select(OrderStatusHistory)
            .where(OrderStatusHistory.order_id == uuid.UUID(str(order_id)))
            .order_by(OrderStatusHistory.created_at, OrderStatusHistory.id)
        )
        return list(rows)
