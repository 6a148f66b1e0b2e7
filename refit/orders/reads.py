"""Read side of orders: the seller's list (cursor pages), one order with its history, tracking."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import uuid
from collections.abc import Sequence

from sqlalchemy import func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from refit.errors import BadRequest
from refit.models.order import Order, OrderStatus, OrderStatusHistory, ShippingEvent
from refit.orders.schemas import (
    OrderDetail,
    OrderPage,
    OrderRead,
    StatusChange,
    Tracking,
    TrackingEvent,
)


def encode_cursor(order: Order) -> str:
    raw = json.dumps([order.created_at.isoformat(), str(order.id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, uuid.UUID]:
    """The (created_at, id) position a cursor stands for; a cursor we did not make is a 400."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, order_id = json.loads(raw)
        position = dt.datetime.fromisoformat(created_at), uuid.UUID(order_id)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise BadRequest("The cursor is not one this API returned", code="invalid_cursor") from exc
    if position[0].tzinfo is None:
        raise BadRequest("The cursor is not one this API returned", code="invalid_cursor")
    return position


async def list_orders(
    session: AsyncSession, user_id: uuid.UUID, *, limit: int, cursor: str | None
) -> OrderPage:
    """Newest first. Keyset pagination on (created_at, id): stable while orders are added."""
    query = (
        select(Order)
        .where(Order.user_id == user_id)
        .order_by(Order.created_at.desc(), Order.id.desc())
        .limit(limit + 1)
    )
    if cursor is not None:
        created_at, order_id = decode_cursor(cursor)
        query = query.where(tuple_(Order.created_at, Order.id) < tuple_(created_at, order_id))
    orders = list((await session.scalars(query)).all())
    more = len(orders) > limit
    orders = orders[:limit]
    return OrderPage(
        items=[OrderRead.model_validate(o) for o in orders],
        next_cursor=encode_cursor(orders[-1]) if more else None,
    )


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


async def tracking(session: AsyncSession, order: Order) -> Tracking:
    events = (
        await session.scalars(
            select(ShippingEvent)
            .where(ShippingEvent.order_id == order.id)
            .order_by(
                func.coalesce(ShippingEvent.occurred_at, ShippingEvent.created_at),
                ShippingEvent.created_at,
            )
        )
    ).all()
    latest = events[-1] if events else None
    return Tracking(
        order_status=OrderStatus(order.status),
        carrier=order.shipping_carrier,
        tracking_number=order.tracking_number,
        status=(latest.carrier_status or latest.event_type) if latest else "UNKNOWN",
        eta=_eta(events),
        events=[TrackingEvent.model_validate(e) for e in events],
    )


def _eta(events: Sequence[ShippingEvent]) -> dt.datetime | None:
    # Shippo's track objects carry the carrier's estimate as "eta": the newest one wins.
    for event in reversed(events):
        raw = event.raw_data or {}
        value = raw.get("eta") or (raw.get("data") or {}).get("eta")
        if isinstance(value, str):
            try:
                return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
    return None
