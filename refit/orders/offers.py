"""The seller's answer to a revised offer (an order in offer_pending).

Accepting stamps `offer_accepted_at` and leaves the status alone: the payout moves the order
to completed. Declining moves it to returning through `service.transition()`. Both decide
under the order's row lock, so the expiry sweep and a double click cannot slip in between.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from refit import transactions
from refit.errors import Conflict
from refit.models.order import Order, OrderStatus
from refit.orders import service

S = OrderStatus


async def _open_offer(session: AsyncSession, order_id: uuid.UUID, *, refuse_expired: bool) -> Order:
    order = await service.get_order(session, order_id, for_update=True)
    if order.status != S.OFFER_PENDING:
        raise Conflict(
            f"{order.order_number} has no revised offer to answer (it is {order.status})",
            code="invalid_transition",
        )
    expired = order.offer_expires_at is not None and order.offer_expires_at <= dt.datetime.now(
        dt.UTC
    )
    if refuse_expired and expired:
        raise Conflict(
            f"The revised offer for {order.order_number} expired; the device is being returned",
            code="offer_expired",
        )
    return order


async def accept_offer(session: AsyncSession, order_id: uuid.UUID) -> Order:
    """Accept the revised price (final_price_usd). Accepting twice is harmless."""
    order = await _open_offer(session, order_id, refuse_expired=True)
    if order.offer_accepted_at is None:
        # Not a status: the seller's yes, stamped by the service after the RLS-checked lock.
        async with transactions.as_service(session):
            order.offer_accepted_at = dt.datetime.now(dt.UTC)
    return order


async def decline_offer(session: AsyncSession, order_id: uuid.UUID, *, actor: str) -> Order:
    """Decline the revised price: the device goes back to the seller."""
    # Declining a lapsed offer is what the expiry sweep would do anyway: allowed.
    order = await _open_offer(session, order_id, refuse_expired=False)
    if order.offer_accepted_at is not None:
        raise Conflict(
            f"The revised offer for {order.order_number} was already accepted",
            code="offer_already_accepted",
        )
    return await service.transition(
        session,
        order_id,
        S.RETURNING,
        actor=actor,
        notes="seller declined the revised offer",
        expected_from={S.OFFER_PENDING},
    )
