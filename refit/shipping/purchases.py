"""The seller's "buy this label" request: checks, then processing_shipment (the job follows).

The decision is one transaction with no network call in it. The only carrier call a purchase
may need is a verdict on the address, when none is on record for it: `request_label` then
raises `VerdictNeeded` (its transaction rolls back, the order's lock goes with it), the
caller asks the carrier with nothing held and decides again with the verdict in hand.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from refit import transactions
from refit.addresses.service import fingerprint
from refit.errors import Conflict, Unprocessable
from refit.models import Order, OrderStatus
from refit.models.shipping import IN_FLIGHT, LabelPurchase, RateQuote
from refit.orders.service import get_order, transition
from refit.shipping import addresses, state
from refit.shipping.addresses import AddressSnapshot, Verdict
from refit.shipping.rates import order_address


class VerdictNeeded(Exception):
    """The purchase can go ahead only with the carrier's verdict on this address."""

    def __init__(self, address: AddressSnapshot) -> None:
        super().__init__("the carrier's verdict on the address is needed")
        self.address = address


async def request_label(
    session: AsyncSession,
    order_id: uuid.UUID,
    rate_id: str,
    *,
    user_id: uuid.UUID,
    carrier_name: str,
    verdict: Verdict | None = None,
) -> Order:
    """Record the chosen rate and move the order to processing_shipment; the transition
    defers the label job in this same transaction (it exists iff this commits). Everything
    is decided under the order's row lock; `verdict` is the carrier's answer on the address
    when an earlier try raised `VerdictNeeded`."""
    order = await get_order(session, order_id, for_update=True)
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
    async with transactions.as_service(session):
        quote = await session.scalar(
            select(RateQuote).where(RateQuote.order_id == order.id, RateQuote.rate_id == rate_id)
        )
    if quote is None:
        # Only rates we showed for this very order: never an arbitrary rate object.
        raise Unprocessable(
            "rate_id is not one of the rates quoted for this order; ask for rates first",
            code="unknown_rate",
        )
    if quote.carrier_name != carrier_name or quote.expires_at <= dt.datetime.now(dt.UTC):
        raise Conflict("This rate has expired; ask for rates again", code="rate_expired")
    address = await order_address(session, order, lock=True)
    if fingerprint(address) != quote.address_fingerprint:
        raise Conflict(
            "The shipping address changed since these rates were quoted; ask for rates again",
            code="rate_expired",
        )
    if verdict is not None:
        addresses.record_validation(address, verdict)
    on_record = addresses.verdict_on_record(address, carrier_name)
    if on_record is None:
        raise VerdictNeeded(AddressSnapshot.of(address))
    addresses.require_deliverable(on_record)

    await state.choose_rate(session, order, quote)
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
    label job clears when it ends in ERROR) or an attempt whose reply never came (STARTED)
    or is still QUEUED (PENDING). Buying with a new rate now could end in two paid labels.

    The simplest safe answer is no: nothing is bought until that purchase is resolved (by the
    label job, an operator, or cancelling the order, whose refund job settles it). Resolving
    or refunding it from this request instead would mean carrier calls and waits here.
    The order row is locked (FOR UPDATE), and the label job writes its STARTED row under
    the same lock, after re-checking the order still wants that rate (labels._buy).
    """
    async with transactions.as_service(session):
        in_flight = order.label_transaction_id is not None or bool(
            await session.scalar(
                select(
                    exists().where(
                        LabelPurchase.order_id == order.id,
                        LabelPurchase.status.in_(IN_FLIGHT),
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
