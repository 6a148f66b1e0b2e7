"""The browser app's export, one JSON document per browser (docs/localstorage-export.md).

These models are the format: docs/localstorage-export.schema.json is generated from them
(`python -m refit.localstorage.schemas`) and a test keeps the file current, so the web app
validates its export against exactly what we accept. Unknown fields are refused: a typo in
the web app must not lose data silently.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)
from solders.pubkey import Pubkey

from refit.addresses.schemas import AddressFields
from refit.addresses.service import MAX_ADDRESSES_PER_USER
from refit.models.catalog import DeviceCategory
from refit.models.order import OrderStatus
from refit.money import MAX_SOL, MAX_USD

FORMAT = "refit-localstorage-export"
SCHEMA_FILE = Path(__file__).resolve().parents[2] / "docs" / "localstorage-export.schema.json"
SCHEMA_ID = "https://refit.example/schemas/localstorage-export.schema.json"

S = OrderStatus

# Every status is imported as history (refit/orders/imported.py): the order's status is
# `imported` and the browser's is kept for display, so no status can put an order in a queue.
# The backend's own statuses are shown as they are (not `imported` itself: an export is of
# orders the browser held).
KEPT_STATUSES = frozenset(s for s in S if s is not S.IMPORTED)
# The browser app's own words: what each is shown as.
MAPPED_STATUSES: dict[str, OrderStatus] = {
    "label_created": S.AWAITING_SHIPMENT,
    "in_transit": S.SHIPPED,
    "delivered": S.RECEIVED,
    "paid": S.COMPLETED,
    "canceled": S.CANCELLED,
    "expired": S.CANCELLED,
}
ACCEPTED_STATUSES = sorted({s.value for s in KEPT_STATUSES} | set(MAPPED_STATUSES))


def backend_status(status: str) -> OrderStatus:
    """The status an imported order is shown in (the status was validated)."""
    return MAPPED_STATUSES.get(status) or OrderStatus(status)


# A browser's clock may be off, not by more than a day: a time further ahead did not happen
# (the last microsecond of year 9999 as an order's created_at once made the order list's next
# cursor name that order again). Offers' and quotes' expiries may lie ahead.
CLOCK_SKEW = dt.timedelta(days=1)


def _happened(value: dt.datetime) -> dt.datetime:
    if value > dt.datetime.now(dt.UTC) + CLOCK_SKEW:
        raise ValueError("a time that has not come yet (more than a day ahead of the server's)")
    return value


Happened = Annotated[AwareDatetime, AfterValidator(_happened)]

BrowserId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
OptionalText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]
# Money as the quote showed it: USD to the cent, SOL to 0.0001 (refit/money.py). More places
# are refused rather than rounded: the seller was shown this exact amount.
Usd = Annotated[Decimal, Field(ge=0, le=MAX_USD, decimal_places=2)]
Sol = Annotated[Decimal, Field(ge=0, le=MAX_SOL, decimal_places=4)]
Signature = Annotated[str, StringConstraints(pattern=r"^[1-9A-HJ-NP-Za-km-z]{64,88}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExportAddress(AddressFields):
    """A saved address (the same rules as the addresses API), with the browser's id."""

    id: BrowserId
    is_default: bool = False
    created_at: Happened | None = None


class ExportDevice(_Strict):
    brand: Text
    model: Text
    storage: Text | None = None
    category: DeviceCategory | None = None
    # The grade the seller chose (a condition_grades code such as "good").
    condition: Text
    # Anything else the browser recorded about the device, kept as it is.
    details: dict[str, Any] | None = None


class ExportQuote(_Strict):
    price_usd: Usd
    price_sol: Sol
    sol_usd_rate: Annotated[Decimal, Field(gt=0)] | None = None
    quoted_at: Happened | None = None
    expires_at: AwareDatetime | None = None


class ExportLabel(_Strict):
    carrier: Text | None = None
    service: Text | None = None
    tracking_number: Text | None = None
    label_url: Annotated[str, StringConstraints(max_length=2000)] | None = None
    cost_usd: Usd | None = None
    purchased_at: Happened | None = None
    # Whatever else the browser held (the carrier's answer, say), kept in the history entry.
    raw: dict[str, Any] | None = None


class ExportStatusChange(_Strict):
    # The browser's own word for the status at the time, kept as it was.
    status: Text
    at: Happened
    note: OptionalText | None = None


class ExportOrder(_Strict):
    id: BrowserId
    # The number the browser showed; the backend allocates its own (ORD-...).
    order_number: Text | None = None
    status: Annotated[str, Field(json_schema_extra={"enum": ACCEPTED_STATUSES})]
    device: ExportDevice
    quote: ExportQuote
    # The id of one of this document's addresses.
    address_id: BrowserId | None = None
    created_at: Happened
    updated_at: Happened | None = None
    shipped_at: Happened | None = None
    received_at: Happened | None = None
    completed_at: Happened | None = None
    cancelled_at: Happened | None = None
    label: ExportLabel | None = None
    payment_tx_signature: Signature | None = None
    history: list[ExportStatusChange] = Field(default_factory=list, max_length=200)

    @field_validator("status")
    @classmethod
    def _known(cls, status: str) -> str:
        if status not in ACCEPTED_STATUSES:
            raise ValueError(f"unknown status {status!r}; one of: {', '.join(ACCEPTED_STATUSES)}")
        return status


class ExportDocument(_Strict):
    """One browser's storage: its wallet, saved addresses and orders."""

    model_config = ConfigDict(
        extra="forbid",
        title="ReFit browser storage export",
        json_schema_extra={"$id": SCHEMA_ID},
    )

    format: Literal["refit-localstorage-export"]
    version: Literal[1]
    exported_at: Happened
    # The Solana wallet (base58 public key) the browser was signed in with.
    wallet_address: Annotated[str, StringConstraints(pattern=r"^[1-9A-HJ-NP-Za-km-z]{32,44}$")]
    addresses: list[ExportAddress] = Field(default_factory=list, max_length=MAX_ADDRESSES_PER_USER)
    orders: list[ExportOrder] = Field(default_factory=list)

    @field_validator("wallet_address")
    @classmethod
    def _pubkey(cls, wallet: str) -> str:
        try:
            Pubkey.from_string(wallet)
        except ValueError:
            raise ValueError("not a base58 Solana public key") from None
        return wallet


def json_schema() -> dict[str, Any]:
    """The export's JSON Schema (draft 2020-12), as the web app validates against it."""
    schema = ExportDocument.model_json_schema(mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    SCHEMA_FILE.write_text(json_schema_text())
    print(f"wrote {SCHEMA_FILE}")
