"""The box a device ships in, by device category (packed, with padding)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from refit.models import Order
from refit.shipping.carrier import Parcel

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
