"""The one writer of an order's final price (`final_price_usd`): what we pay after the
inspection, and of what was paid (`final_price_sol`, `payment_tx_signature`, once the payout's
transfer is finalized). The quoted price is the quote's, copied once by `create_order()`."""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from refit import transactions
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
    async with transactions.as_service(session):
        order.final_price_usd = amount.quantize(USD_STEP, rounding=ROUND_DOWN)
        await session.flush()
    log.info("orders.final_price_set", order_id=str(order.id), final_price_usd=str(amount))
    return order


async def record_payment(
    session: AsyncSession, order: Order, final_price_sol: Decimal, signature: str
) -> Order:
    """Record what the seller was paid on chain (`order` locked by the caller, its transfer
    finalized): the SOL amount and the transaction's signature. Written once."""
    if order.payment_tx_signature is not None and order.payment_tx_signature != signature:
        raise ValueError(f"order {order.order_number} already records another payment")
    if order.status not in (OrderStatus.INSPECTING, OrderStatus.OFFER_PENDING):
        raise Conflict(
            f"Order {order.order_number} is {order.status.value}; it is not waiting for payment",
            code="invalid_order_state",
        )
    async with transactions.as_service(session):
        order.final_price_sol = final_price_sol
        order.payment_tx_signature = signature
        await session.flush()
    log.info("orders.payment_recorded", order_id=str(order.id), signature=signature)
    return order
