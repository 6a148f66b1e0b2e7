"""The operators' inspection API in and out. Money as Decimal, sent as strings."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from refit.inspection.checklist import ITEMS, Answer
from refit.models.inspection import Outcome
from refit.models.order import OrderStatus

Price = Annotated[Decimal, Field(ge=0, max_digits=10, decimal_places=2)]


class Screen(StrEnum):
    OK = "ok"  # no marks that show with the screen on
    SCRATCHED = "scratched"  # scratches, no cracks
    CRACKED = "cracked"  # cracked glass, the display and touch still work
    DEAD = "dead"  # no picture, lines or dead areas, or touch does not work


class Checklist(BaseModel):
    """What the inspector checked. `activation_lock_off: false` (Find My / FRP still on) makes
    the device unbuyable; so does `powers_on: false` unless the grade is `broken`, the one
    grade whose definition covers a device that does not turn on."""

    model_config = ConfigDict(extra="forbid")

    powers_on: bool
    activation_lock_off: bool
    screen: Screen
    # Battery health as the device reports it; None when it cannot say (it does not power on).
    battery_health_pct: Annotated[int, Field(ge=0, le=100)] | None = None
    # The device category's other checks (refit/inspection/checklist.py names them: a phone's
    # `cameras_work`, a laptop's `keyboard_works`...), each `yes`, `no` or `not_checked`; an
    # item left out was not checked. An item of another category is refused (422).
    items: dict[Annotated[str, Field(max_length=32)], Answer] = Field(default_factory=dict)

    @field_validator("items")
    @classmethod
    def _known_items(cls, items: dict[str, Answer]) -> dict[str, Answer]:
        unknown = sorted(code for code in items if code not in ITEMS)
        if unknown:
            raise ValueError(f"unknown checklist items: {', '.join(unknown)}")
        return items


class InspectionCreate(BaseModel):
    """The verdict's input. The price is never typed: it is the catalog's for the grade and
    storage found; only an admin may give another (`override_price_usd` with its reason)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    grade: Annotated[str, Field(min_length=1, max_length=32, examples=["fair"])]
    # The storage found; default: the one quoted.
    storage: Annotated[str, Field(min_length=1, max_length=16)] | None = None
    # 15 digits passing the Luhn check; or a serial number (one of the two is required).
    imei: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    serial: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    checklist: Checklist
    notes: Annotated[str, Field(max_length=4000)]
    override_price_usd: Price | None = None
    override_reason: Annotated[str, Field(min_length=1, max_length=500)] | None = None

    @field_validator("imei", mode="before")
    @classmethod
    def _digits_only(cls, imei: Any) -> Any:
        # As printed on boxes and settings screens: "35-209900-176148-1", "35 209900 176148 1".
        return imei.replace(" ", "").replace("-", "") if isinstance(imei, str) else imei


class InspectionRead(BaseModel):
    """The whole inspection, as operators see it."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    order_id: uuid.UUID
    operator_id: uuid.UUID
    grade: str
    storage: str | None
    imei: str | None
    serial: str | None
    checklist: dict[str, Any]
    notes: str
    catalog_price_usd: Decimal | None
    override_price_usd: Decimal | None
    override_reason: str | None
    override_by: uuid.UUID | None
    final_price_usd: Decimal | None
    outcome: Outcome
    created_at: dt.datetime


class VerdictRead(BaseModel):
    """What the verdict decided: `as_quoted` (the quoted price stands; the order waits in
    inspecting for its payout), `revised_offer` (offer_pending) or `unbuyable` (returning)."""

    order_id: uuid.UUID
    status: OrderStatus
    outcome: Outcome
    quoted_price_usd: Decimal
    final_price_usd: Decimal | None
    inspection: InspectionRead


class EvidenceRead(BaseModel):
    id: uuid.UUID
    # Signed, valid for REFIT_EVIDENCE_URL_TTL_SECONDS.
    url: str
    content_type: str
    bytes: int
    width: int
    height: int
    sha256: str
    uploaded_by: uuid.UUID
    created_at: dt.datetime


class EvidenceUploaded(BaseModel):
    order_id: uuid.UUID
    photos: list[EvidenceRead]


# The operators' view of a seller's address, shown in the back office's order story. Defined
# here because its OpenAPI name is this module's (refit__inspection__schemas__AddressRead: the
# addresses domain has an AddressRead too): moving it would rename the TypeScript client's type.
class AddressRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    street1: str
    street2: str | None
    city: str
    state: str
    zip: str
    country: str
    phone: str | None
    is_validated: bool
