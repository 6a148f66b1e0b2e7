"""The box a device ships in, by device category (packed, with padding), and how it is
protected on the way (insurance, signature)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from refit.carriers.interface import Extras, Parcel
from refit.errors import Conflict
from refit.models import Order
from refit.models.order import OrderStatus
from refit.settings import Settings

# Inches and pounds, padded mailer or box included. "other" is the larger-than-most default, so
# an unknown device is never under-declared (carriers bill adjustments for that).
PARCELS: dict[str, Parcel] = {
    "phone": Parcel(Decimal("9"), Decimal("6"), Decimal("3"), Decimal("1.0")),
    "watch": Parcel(Decimal("6"), Decimal("5"), Decimal("3"), Decimal("0.6")),
    "earbuds": Parcel(Decimal("6"), Decimal("5"), Decimal("3"), Decimal("0.5")),
    "tablet": Parcel(Decimal("14"), Decimal("10"), Decimal("3"), Decimal("2.5")),
    "laptop": Parcel(Decimal("18"), Decimal("13"), Decimal("4"), Decimal("6.0")),
    "console": Parcel(Decimal("18"), Decimal("14"), Decimal("8"), Decimal("10.0")),
    "other": Parcel(Decimal("14"), Decimal("10"), Decimal("4"), Decimal("4.0")),
}

# Used only when neither the catalog nor the order says what the device is.
_NAME_HINTS = (
    ("watch", "watch"),
    ("airpods", "earbuds"),
    ("buds", "earbuds"),
    ("ipad", "tablet"),
    ("tab", "tablet"),
    ("macbook", "laptop"),
    ("laptop", "laptop"),
    ("thinkpad", "laptop"),
    ("xps", "laptop"),
    ("surface laptop", "laptop"),
    ("playstation", "console"),
    ("xbox", "console"),
    ("switch", "console"),
    ("iphone", "phone"),
    ("galaxy", "phone"),
    ("pixel", "phone"),
    ("phone", "phone"),
)


def category_of(order: Order) -> str:
    """The catalog's category copied onto the order, else the order's device_details, else a
    guess from the model name."""
    for candidate in (order.device_category, _detail(order.device_details)):
        if candidate and candidate.lower() in PARCELS:
            return candidate.lower()
    name = f"{order.device_brand} {order.device_model}".lower()
    for hint, category in _NAME_HINTS:
        if hint in name:
            return category
    return "other"


def _detail(details: dict[str, Any] | None) -> str | None:
    value = (details or {}).get("category")
    return value if isinstance(value, str) else None


def parcel_for(category: str) -> Parcel:
    return PARCELS.get(category, PARCELS["other"])


def protection(settings: Settings, order: Order, *, home: bool) -> Extras:
    """Insurance and signature for the device's parcel. To the warehouse (`home` False): the
    quote is its value, insured above `insure_above_usd`. Back to the seller: always insured,
    for the higher of the quote and our revised price (a declined offer is a disputed one;
    the seller's loss would be the device as they described it).

    Only the server's prices: `quoted_price_usd` is written by `create_order()` from the
    quote the server priced (never a request body: OrderCreate, RatesRequest and
    PurchaseLabelRequest refuse any other field), `final_price_usd` by the inspection. An
    imported order's prices are what a browser said: it ships nothing, and this refuses it
    whatever door asked (the doors refuse its status first)."""
    if order.status is OrderStatus.IMPORTED:
        raise Conflict(
            f"Order {order.order_number} is imported history; it ships nothing",
            code="invalid_transition",
            extra={"current_status": order.status.value},
        )
    value = order.quoted_price_usd
    if home and order.final_price_usd is not None:
        value = max(value, order.final_price_usd)
    insured = value > 0 and (home or value > settings.insure_above_usd)
    return Extras(
        insurance_usd=value if insured else None,
        content=f"Used {category_of(order)}",
        signature=value > settings.signature_above_usd,
    )
