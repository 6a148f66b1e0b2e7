"""What the warehouse can act on, as SQL conditions over an order (and its payout, joined
outer): the queue's filters. Each mirrors the rule the service enforces, so a filter shows
exactly the orders whose button the order page offers:

- to receive: the carrier has the parcel moving (shipped; or still awaiting shipment with an
  inbound scan the order has not followed yet). "Mark received" is offered on both.
- to inspect: received, or inspecting with no verdict yet.
- waiting for the seller: a revised offer not answered yet (nobody at the warehouse can act).
- to pay: payouts.service.waits_for_payout, and no live payout (none, or one cancelled: paying
  again re-opens it).
- awaiting a second admin: over the cap and not approved; or stopped where the way out needs
  four-eyes (recovery.needs_second_admin): a sanctions hold's release, a failed payout over
  the cap's retry.
- payout stopped: failed or held, for an admin.
- returns to ship: returning, and the parcel home not handed to the carrier yet (no return
  row, or one without `handed_over_at`: buying, printing or handing over is left to do).
- needs attention: attention_reason set, whatever the status.
- open work: the union of those the warehouse acts on (not "waiting for the seller").
- mine: claimed by the operator looking, while there is work in it.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, TextClause, and_, exists, false, or_, select, text

from refit.models import Order, OrderStatus
from refit.models.inspection import Inspection
from refit.models.payout import HoldReason, Payout, PayoutStatus
from refit.models.shipping import Leg, ReturnShipment, ShippingEvent, TrackingStatus

S = OrderStatus
P = PayoutStatus
_Q = TypeVar("_Q", bound=Select[*tuple[Any, ...]])
# Nothing left to do for anyone, unless flagged for attention. Imported history is never work.
FINAL = frozenset({S.COMPLETED, S.CANCELLED, S.IMPORTED})
SANCTIONS_HOLDS = (HoldReason.SANCTIONS, HoldReason.SANCTIONS_LIST_STALE)


def live_work() -> TextClause:
    """Every filter's orders lie within this: not final, or flagged. Written as literal SQL,
    the very predicate of the partial index ix_orders_live_work (migration 0028), so the
    planner proves the index usable: the queue and its counts read the open orders, not the
    millions of finished ones beside them."""
    final = ", ".join(f"'{status.value}'" for status in sorted(FINAL))
    return text(f"(orders.status NOT IN ({final}) OR orders.attention_reason IS NOT NULL)")


class Work(StrEnum):
    OPEN = "open"
    TO_RECEIVE = "to_receive"
    TO_INSPECT = "to_inspect"
    TO_PAY = "to_pay"
    SECOND_ADMIN = "second_admin"
    PAYOUT_STOPPED = "payout_stopped"
    RETURNS = "returns"
    ATTENTION = "attention"
    WAITING_SELLER = "waiting_seller"
    MINE = "mine"


WORK_LABELS = {
    Work.OPEN: "Open work",
    Work.MINE: "Mine",
    Work.TO_RECEIVE: "To receive",
    Work.TO_INSPECT: "To inspect",
    Work.TO_PAY: "To pay",
    Work.SECOND_ADMIN: "Awaiting a second admin",
    Work.PAYOUT_STOPPED: "Payout stopped",
    Work.RETURNS: "Returns to ship",
    Work.ATTENTION: "Needs attention",
    Work.WAITING_SELLER: "Waiting for the seller",
}


def _scanned_moving() -> ColumnElement[bool]:
    return exists(
        select(ShippingEvent.id).where(
            ShippingEvent.order_id == Order.id,
            ShippingEvent.leg == Leg.INBOUND,
            ShippingEvent.status.in_((TrackingStatus.TRANSIT, TrackingStatus.DELIVERED)),
        )
    )


def _no_verdict() -> ColumnElement[bool]:
    # An outer join (one inspection per order at most), not a subquery per row: the counts
    # look at every open order each time the queue refreshes.
    return Inspection.id.is_(None)


def _waits_for_payout() -> ColumnElement[bool]:
    # payouts.service.waits_for_payout, in SQL.
    return and_(
        Order.final_price_usd > 0,
        or_(
            Order.status == S.INSPECTING,
            and_(Order.status == S.OFFER_PENDING, Order.offer_accepted_at.is_not(None)),
        ),
    )


def joined(query: _Q) -> _Q:
    """`query` (of `Order`) with what the conditions read: its payout and its inspection."""
    return query.outerjoin(Payout, Payout.order_id == Order.id).outerjoin(
        Inspection, Inspection.order_id == Order.id
    )


def condition(work: Work, *, operator_id: uuid.UUID, max_usd: Decimal) -> ColumnElement[bool]:
    """The orders `work` names, for a query of `Order` joined outer to its `Payout` and its
    `Inspection` (`joined`)."""
    if work is Work.TO_RECEIVE:
        return or_(
            Order.status == S.SHIPPED,
            and_(Order.status == S.AWAITING_SHIPMENT, _scanned_moving()),
        )
    if work is Work.TO_INSPECT:
        return or_(Order.status == S.RECEIVED, and_(Order.status == S.INSPECTING, _no_verdict()))
    if work is Work.WAITING_SELLER:
        return and_(Order.status == S.OFFER_PENDING, Order.offer_accepted_at.is_(None))
    if work is Work.TO_PAY:
        return and_(_waits_for_payout(), or_(Payout.id.is_(None), Payout.status == P.CANCELLED))
    if work is Work.SECOND_ADMIN:
        return or_(
            Payout.status == P.AWAITING_APPROVAL,
            and_(Payout.status == P.HELD, Payout.hold_reason.in_(SANCTIONS_HOLDS)),
            and_(Payout.status == P.FAILED, Payout.amount_usd > max_usd),
        )
    if work is Work.PAYOUT_STOPPED:
        return Payout.status.in_((P.FAILED, P.HELD))
    if work is Work.RETURNS:
        handed_over = exists(
            select(ReturnShipment.id).where(
                ReturnShipment.order_id == Order.id, ReturnShipment.handed_over_at.is_not(None)
            )
        )
        return and_(Order.status == S.RETURNING, ~handed_over)
    if work is Work.ATTENTION:
        return Order.attention_reason.is_not(None)
    if work is Work.MINE:
        return and_(
            Order.claimed_by == operator_id,
            or_(Order.status.not_in(FINAL), Order.attention_reason.is_not(None)),
        )
    if work is Work.OPEN:
        acted_on = [w for w in Work if w not in (Work.OPEN, Work.WAITING_SELLER, Work.MINE)]
        return or_(*(condition(w, operator_id=operator_id, max_usd=max_usd) for w in acted_on))
    return false()
