"""The seller's "buy this label" request: checks, then processing_shipment (the job follows)."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from refit import db
from refit.addresses.service import fingerprint
from refit.errors import Conflict, Unprocessable
from refit.models import Order, OrderStatus
from refit.orders.service import transition
from refit.resources import Resources
from refit.shipping.carrier import Carrier
from refit.shipping.models import LabelPurchase, RateQuote
from refit.shipping.rates import ensure_deliverable, load_order, order_address


async def request_label(
    session: AsyncSession,
    resources: Resources,
    carrier: Carrier,
    order_id: uuid.UUID,
    rate_id: str,
    *,
    user_id: uuid.UUID,
) -> Order:
    """Record the chosen rate and move the order to processing_shipment; the transition
    defers the label job in this same transaction (it exists iff this commits)."""
    order = await load_order(session, order_id, lock=True)
    if order.status != OrderStatus.PENDING:
        raise Conflict(
            f"Order {order.order_number} is {order.status}; a label is bought once, "
            "for a pending order",
            code="invalid_transition",
            extra={
                "current_status": order.status,
                "requested_status": OrderStatus.PROCESSING_SHIPMENT.value,
            },
        )
    await _refuse_while_in_flight(session, order)
    async with db.as_service(session):
        quote = await session.scalar(
            select(RateQuote).where(RateQuote.order_id == order.id, RateQuote.rate_id == rate_id)
        )
    if quote is None:
        # Only rates we showed for this very order: never an arbitrary rate object.
        raise Unprocessable(
            "rate_id is not one of the rates quoted for this order; ask for rates first",
            code="unknown_rate",
        )
    if quote.carrier_name != carrier.name or quote.expires_at <= dt.datetime.now(dt.UTC):
        raise Conflict("This rate has expired; ask for rates again", code="rate_expired")
    address = await order_address(session, order)
    if fingerprint(address) != quote.address_fingerprint:
        raise Conflict(
            "The shipping address changed since these rates were quoted; ask for rates again",
            code="rate_expired",
        )
    await ensure_deliverable(session, resources, carrier, address)

    order.shipping_rate_id = quote.rate_id
    order.shipping_carrier = quote.carrier
    order.shipping_service = quote.service
    order.shipping_cost = quote.amount
    order.label_error = None
    await session.flush()
    return await transition(
        session,
        order.id,
        OrderStatus.PROCESSING_SHIPMENT,
        actor=f"user:{user_id}",
        metadata={"rate_id": quote.rate_id, "carrier": quote.carrier, "service": quote.service},
        expected_from={OrderStatus.PENDING},
    )


async def _refuse_while_in_flight(session: AsyncSession, order: Order) -> None:
    """An order sent back to pending (processing_shipment -> pending) may still have an
    earlier purchase in flight: a transaction we wait on (label_transaction_id, which the
    label job clears when it ends in ERROR) or an attempt whose reply never came ('started')
    or is still QUEUED ('pending'). Buying with a new rate now could end in two paid labels.

    The simplest safe answer is no: nothing is bought until that purchase is resolved (by the
    label job, an operator, or cancelling the order, whose refund job settles it). Resolving
    or refunding it from this request instead would mean carrier calls and waits here.
    The order row is locked (FOR UPDATE), and the label job writes its 'started' row under
    the same lock, after re-checking the order still wants that rate (labels._buy).
    """
    async with db.as_service(session):
        in_flight = order.label_transaction_id is not None or bool(
            await session.scalar(
                select(
                    exists().where(
                        LabelPurchase.order_id == order.id,
                        LabelPurchase.status.in_(("started", "pending")),
                    )
                )
            )
        )
    if in_flight:
        raise Conflict(
            f"An earlier label purchase for order {order.order_number} is still being resolved "
            "with the carrier; a new label can be bought once it is settled. Try again later "
            "or contact support.",
            code="label_purchase_in_flight",
        )
