"""The one writer of an order's final price (`final_price_usd`): what we pay after the
inspection. The quoted price is the quote's, copied once by `create_order()`."""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from refit import db
from refit.errors import Conflict
from refit.models.order import Order, OrderStatus
from refit.money import MAX_USD, USD_STEP

log = structlog.get_logger(__name__)


async def set_final_price(session: AsyncSession, order: Order, amount: Decimal) -> Order:
    """Set the price we pay for `order` (locked by the caller, in `inspecting`: the verdict
    is the only moment a final price is decided). Never above the quoted price."""
    if order.status is not OrderStatus.INSPECTING:
        raise Conflict(
            f"Order {order.order_number} is {order.status.value}; its final price is set by "
            "the inspection",
            code="invalid_order_state",
        )
    if amount < 0 or amount > min(order.quoted_price_usd, MAX_USD):
        # The price promise: a device is never paid more than its quote.
        raise ValueError(f"final price {amount} outside 0..{order.quoted_price_usd}")
    async with db.as_service(session):
        order.final_price_usd = amount.quantize(USD_STEP, rounding=ROUND_DOWN)
        await session.flush()
    log.info("orders.final_price_set", order_id=str(order.id), final_price_usd=str(amount))
    return order
