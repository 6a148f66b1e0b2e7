"""Jinja2 pages of the dashboard: one environment, autoescaped, and the helpers templates use."""

from __future__ import annotations

import datetime as dt
import functools
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse

from refit.inspection import checklist
from refit.models import OrderStatus
from refit.models.inspection import Outcome
from refit.models.payout import HoldReason, PayoutStatus
from refit.models.shipping import Leg, ReturnStatus, TrackingStatus

if TYPE_CHECKING:
    from fastapi.templating import Jinja2Templates

HERE = Path(__file__).parent

# What a person reads for each status: no raw code is shown anywhere in the dashboard.
STATUS_LABELS = {
    OrderStatus.PENDING: "New, no label yet",
    OrderStatus.PROCESSING_SHIPMENT: "Buying label",
    OrderStatus.AWAITING_SHIPMENT: "Awaiting shipment",
    OrderStatus.SHIPPED: "Shipped",
    OrderStatus.RECEIVED: "Received",
    OrderStatus.INSPECTING: "Inspecting",
    OrderStatus.OFFER_PENDING: "Offer sent",
    OrderStatus.RETURNING: "Returning",
    OrderStatus.COMPLETED: "Completed",
    OrderStatus.CANCELLED: "Cancelled",
    OrderStatus.IMPORTED: "Imported (history)",
}
PAYOUT_LABELS = {
    PayoutStatus.AWAITING_APPROVAL: "Waiting for a second admin",
    PayoutStatus.PENDING: "Paying",
    PayoutStatus.SIGNED: "Paying: signed",
    PayoutStatus.SENT: "Paying: waiting for the chain",
    PayoutStatus.FINALIZED: "Paid",
    PayoutStatus.FAILED: "Payout failed",
    PayoutStatus.HELD: "Payout held",
    PayoutStatus.CANCELLED: "Payout cancelled",
}
TRACKING_LABELS = {
    TrackingStatus.UNKNOWN: "No scan yet",
    TrackingStatus.PRE_TRANSIT: "Label made, not scanned",
    TrackingStatus.TRANSIT: "In transit",
    TrackingStatus.DELIVERED: "Delivered",
    TrackingStatus.RETURNED: "Returned to sender",
    TrackingStatus.FAILURE: "Carrier failure",
}
HOLD_LABELS = {
    HoldReason.SANCTIONS: "Recipient on the sanctions list",
    HoldReason.SANCTIONS_LIST_STALE: "Sanctions list too old to screen",
    HoldReason.ALREADY_ON_CHAIN: "A transfer is already on chain",
}
LEG_LABELS = {Leg.INBOUND: "To the warehouse", Leg.RETURN: "Home to the seller"}
RETURN_LABELS = {
    ReturnStatus.STARTED: "Buying",
    ReturnStatus.PENDING: "Bought, the carrier is making it",
    ReturnStatus.PURCHASED: "Ready to print",
    ReturnStatus.FAILED: "Not bought",
    ReturnStatus.DELIVERED: "Delivered to the seller",
}
OUTCOME_LABELS = {
    Outcome.AS_QUOTED: "As quoted",
    Outcome.REVISED_OFFER: "Revised offer",
    Outcome.UNBUYABLE: "Cannot buy: goes home",
}
_PAYING = frozenset({OrderStatus.INSPECTING, OrderStatus.OFFER_PENDING})


def human_status(
    status: OrderStatus,
    *,
    payout: PayoutStatus | None = None,
    final_price: Decimal | None = None,
    offer_accepted: bool = False,
) -> str:
    """An order's state as the floor reads it: a payout under way speaks for its order (a
    payout waiting for a second admin is not hidden under "Inspecting")."""
    if status is OrderStatus.COMPLETED:
        return "Paid" if payout is PayoutStatus.FINALIZED else STATUS_LABELS[status]
    if status in _PAYING and payout is not None and payout is not PayoutStatus.CANCELLED:
        return PAYOUT_LABELS[payout]
    if status is OrderStatus.INSPECTING and final_price is not None:
        return "Inspected: ready to pay"
    if status is OrderStatus.OFFER_PENDING:
        return "Offer accepted: ready to pay" if offer_accepted else "Offer sent: seller to answer"
    return STATUS_LABELS[status]


def usd(value: Decimal | None) -> str:
    return "—" if value is None else f"${value:,.2f}"


def when(value: dt.datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400 * 2:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def ago(value: dt.datetime | None) -> str:
    """How long ago, as a person reads a queue: "5 min", "3.5 h", "2.0 d"."""
    if value is None:
        return "—"
    return duration((dt.datetime.now(dt.UTC) - value).total_seconds())


def local_path(url: str) -> str:
    """A URL signed under REFIT_PUBLIC_URL as a path on whatever host serves this page."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


@functools.cache
def templates() -> Jinja2Templates:
    # jinja2 costs ~0.1 s of CPU at import: loaded with the first page shown, not at the
    # start of every API process.
    from fastapi.templating import Jinja2Templates

    loaded = Jinja2Templates(directory=HERE / "templates")
    loaded.env.filters.update(usd=usd, when=when, duration=duration, ago=ago, local_path=local_path)
    loaded.env.globals.update(
        STATUS_LABELS=STATUS_LABELS,
        PAYOUT_LABELS=PAYOUT_LABELS,
        TRACKING_LABELS=TRACKING_LABELS,
        LEG_LABELS=LEG_LABELS,
        HOLD_LABELS=HOLD_LABELS,
        RETURN_LABELS=RETURN_LABELS,
        OUTCOME_LABELS=OUTCOME_LABELS,
        human_status=human_status,
        statuses=list(OrderStatus),
    )
    # The order page's inspection checklist as labelled rows (refit/inspection/checklist.py).
    loaded.env.globals["checklist_rows"] = checklist.rows
    return loaded


# Scripts only from our own static folder; e-mail previews (srcdoc, sandboxed) keep their
# inline styles; no framing of the dashboard; nothing cached (sellers' details).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
    "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'; "
    "base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def page(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render `name` with the signed-in operator (if any) and the flash message of a redirect."""
    context.setdefault("operator", getattr(request.state, "operator", None))
    response = templates().TemplateResponse(request, name, context, status_code=status_code)
    response.headers.update(SECURITY_HEADERS)
    return response
