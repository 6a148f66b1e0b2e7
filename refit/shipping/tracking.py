"""The parcels as sellers (GET /api/orders/{id}/tracking) and operators (the order's story) see
them, from the normalised events the shipping writer recorded (refit/shipping/state.py)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from refit.carriers.interface import TrackingStatus
from refit.models import Order
from refit.models.shipping import Leg, ShippingEvent
from refit.shipping.schemas import TrackingEventRead, TrackingRead


async def tracking(session: AsyncSession, order: Order) -> TrackingRead:
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
    # The status, number and ETA are the inbound parcel's; the way home's events are listed
    # too, marked `leg: return`.
    inbound = [e for e in events if e.leg is Leg.INBOUND]
    latest = inbound[-1] if inbound else None
    # The newest estimate the carrier gave (a later event may come without one).
    eta = next((e.eta for e in reversed(inbound) if e.eta is not None), None)
    return TrackingRead(
        order_status=order.status,
        carrier=order.shipping_carrier,
        tracking_number=order.tracking_number,
        status=latest.status if latest else TrackingStatus.UNKNOWN,
        eta=eta,
        events=[TrackingEventRead.model_validate(e) for e in events],
    )
