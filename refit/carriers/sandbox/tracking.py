"""The sandbox carrier's parcels in transit: each step on its own clock from the purchase
(TRANSIT_AFTER, DELIVERED_AFTER), or when an operator pushed the parcel there."""

from __future__ import annotations

import datetime as dt
from typing import Any

from refit.carriers.interface import Tracking, TrackingEvent, TrackingStatus

TRANSIT_AFTER = dt.timedelta(hours=1)
DELIVERED_AFTER = dt.timedelta(days=2)
TRACKING_STEPS = (TrackingStatus.PRE_TRANSIT, TrackingStatus.TRANSIT, TrackingStatus.DELIVERED)


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


_DETAILS = {
    TrackingStatus.PRE_TRANSIT: "Label created; the carrier is waiting for the parcel.",
    TrackingStatus.TRANSIT: "In transit to the destination facility.",
    TrackingStatus.DELIVERED: "Delivered to the ReFit warehouse.",
}
# A parcel on its way back to its seller (metadata "return:<order id>").
_RETURN_DELIVERED = "Delivered to the addressee."


def tracking_of(transaction: dict[str, Any], carrier: str) -> Tracking:
    """A sandbox parcel's track as of now: each step on its clock (TRANSIT_AFTER,
    DELIVERED_AFTER) or at the moment an operator pushed it there, whichever came first."""
    purchased = dt.datetime.fromisoformat(transaction["purchased_at"])
    pushed = transaction.get("tracking_pushed") or {}
    clock = (purchased, purchased + TRANSIT_AFTER, purchased + DELIVERED_AFTER)
    now = now_utc()
    events = []
    for step, natural in zip(TRACKING_STEPS, clock, strict=True):
        at = dt.datetime.fromisoformat(pushed[step.value]) if step.value in pushed else None
        if natural <= now and (at is None or natural < at):
            at = natural
        if at is None:
            break
        details = _DETAILS[step]
        if step is TrackingStatus.DELIVERED and str(transaction.get("metadata")).startswith(
            "return:"
        ):
            details = _RETURN_DELIVERED
        events.append(TrackingEvent(status=step, details=details, occurred_at=at))
    return Tracking(
        carrier=carrier,
        tracking_number=transaction["tracking_number"],
        status=events[-1].status,
        eta=purchased + DELIVERED_AFTER,
        events=events,
        metadata=transaction.get("metadata"),
        destination_zip=transaction.get("address_to_zip"),
    )
