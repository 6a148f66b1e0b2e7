"""The top of the order page: what the order waits for and who must act, the price under
its right name (an offer the seller has not answered was never paid), and the carrier's ETA
only while a parcel is still on its way."""

from __future__ import annotations

from refit.backoffice.schemas import AdminOrderDetail
from refit.models import OrderStatus
from refit.models.payout import PayoutStatus
from refit.models.shipping import TrackingStatus

S = OrderStatus

_WAITS = {
    S.PENDING: "The seller chooses a shipping label.",
    S.PROCESSING_SHIPMENT: "The label job is buying the label.",
    S.AWAITING_SHIPMENT: "The seller ships the parcel.",
    S.SHIPPED: "The warehouse receives the parcel when it arrives.",
    S.RECEIVED: "The warehouse starts the inspection.",
    S.RETURNING: "The warehouse ships the device back to the seller.",
    S.COMPLETED: "Nobody: the order is finished.",
    S.CANCELLED: "Nobody: the order is cancelled.",
    S.IMPORTED: "Nobody: history brought from the old app.",
}
# Statuses in which a parcel is on its way (to us, or home): the only ones with an ETA.
_MOVING = frozenset({S.AWAITING_SHIPMENT, S.SHIPPED, S.RETURNING})
_ARRIVED = frozenset({TrackingStatus.DELIVERED, TrackingStatus.RETURNED})


def _live_payout(story: AdminOrderDetail) -> bool:
    return story.payout is not None and story.payout.status is not PayoutStatus.CANCELLED


def who_acts(story: AdminOrderDetail, payout_state: str | None) -> str:
    """Who moves the order next, in one sentence; a payout under way answers for it."""
    o = story.order
    if o.status in (S.INSPECTING, S.OFFER_PENDING) and _live_payout(story) and payout_state:
        return payout_state
    if o.status is S.INSPECTING:
        if story.inspection is None:
            return "The warehouse inspects the device."
        return "An admin pays the seller."
    if o.status is S.OFFER_PENDING:
        if o.offer_accepted_at is not None:
            return "An admin pays the seller: the revised offer is accepted."
        return "The seller accepts or declines the revised offer."
    return _WAITS[o.status]


def price_label(story: AdminOrderDetail) -> str:
    """The name of the inspection's final price: paid only once the payout is finalized."""
    if story.payout is not None and story.payout.status is PayoutStatus.FINALIZED:
        return "Price paid"
    if story.order.status is S.OFFER_PENDING:
        if story.order.offer_accepted_at is None:
            return "Revised offer (not answered)"
        return "Revised offer (accepted, to pay)"
    if story.order.status in (S.RETURNING, S.CANCELLED):
        return "Price offered (not paid)"
    return "Price to pay"


def show_eta(story: AdminOrderDetail) -> bool:
    t = story.tracking
    return t.eta is not None and story.order.status in _MOVING and t.status not in _ARRIVED
