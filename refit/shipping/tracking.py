"""The seller's view of the parcels: GET /api/orders/{id}/tracking, from the normalised events
the shipping writer recorded (refit/shipping/state.py)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from refit.auth.deps import UserSessionDep
from refit.carriers.interface import TrackingStatus
from refit.models import Order
from refit.models.shipping import Leg, ShippingEvent
from refit.orders.service import get_order
from refit.shipping.schemas import TrackingEventRead, TrackingRead

router = APIRouter(prefix="/api/orders", tags=["orders"])


@router.get("/{order_id}/tracking", response_model=TrackingRead)
async def get_tracking(order_id: uuid.UUID, session: UserSessionDep) -> TrackingRead:
    """The carrier, tracking number, latest status, ETA and every event, oldest first."""
    return await tracking(session, await get_order(session, order_id))


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
