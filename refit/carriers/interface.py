"""The carrier interface: what ReFit asks of a shipping provider, in its own terms.

Two implementations: `ShippoCarrier` (refit/carriers/shippo/client.py, the REST API) and
`SandboxCarrier` (refit/carriers/sandbox/carrier.py, the embedded default). Pick one with
`refit.carriers.picker.open_carrier(settings)`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol

from refit.models.shipping import TrackingStatus


@dataclass(frozen=True)
class Address:
    name: str
    street1: str
    city: str
    state: str
    zip: str
    country: str = "US"
    street2: str | None = None
    company: str | None = None
    phone: str | None = None
    email: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Parcel:
    length: Decimal
    width: Decimal
    height: Decimal
    weight: Decimal
    distance_unit: str = "in"
    mass_unit: str = "lb"


@dataclass(frozen=True)
class Extras:
    """What a shipment asks beyond carriage: insurance of its contents for their value (USD)
    and a signature on delivery. Priced into the rates, so asked for when rating."""

    insurance_usd: Decimal | None = None
    # What the insurer is told the parcel holds ("Used phone").
    content: str = "Used electronic device"
    signature: bool = False


NO_EXTRAS = Extras()


@dataclass(frozen=True)
class CarrierMessage:
    text: str
    code: str | None = None
    source: str | None = None
    type: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"text": self.text, "code": self.code, "source": self.source, "type": self.type}


@dataclass(frozen=True)
class AddressValidation:
    is_valid: bool
    messages: list[CarrierMessage]
    # The carrier's normalised form of the address, when it differs from what was sent.
    recommended: Address | None = None
    carrier_object_id: str | None = None


@dataclass(frozen=True)
class Rate:
    rate_id: str
    carrier: str
    service: str
    service_token: str | None
    amount: Decimal
    currency: str
    estimated_days: int | None


@dataclass(frozen=True)
class Shipment:
    shipment_id: str
    rates: list[Rate]
    messages: list[CarrierMessage] = field(default_factory=list)


class TransactionStatus(StrEnum):
    WAITING = "WAITING"
    QUEUED = "QUEUED"
    SUCCESS = "SUCCESS"
    ERROR = "ERROR"
    REFUNDED = "REFUNDED"
    REFUNDPENDING = "REFUNDPENDING"
    REFUNDREJECTED = "REFUNDREJECTED"

    @property
    def pending(self) -> bool:
        return self in (TransactionStatus.WAITING, TransactionStatus.QUEUED)

    @property
    def refund_asked(self) -> bool:
        """A refund of this label was asked for already (pending, done or refused)."""
        return self in (
            TransactionStatus.REFUNDPENDING,
            TransactionStatus.REFUNDED,
            TransactionStatus.REFUNDREJECTED,
        )


@dataclass(frozen=True)
class LabelTransaction:
    transaction_id: str
    status: TransactionStatus
    rate_id: str | None
    metadata: str | None = None
    tracking_number: str | None = None
    label_url: str | None = None
    messages: list[CarrierMessage] = field(default_factory=list)
    eta: str | None = None


@dataclass(frozen=True)
class Refund:
    refund_id: str
    transaction_id: str
    status: str  # QUEUED, PENDING, SUCCESS, ERROR


@dataclass(frozen=True)
class TrackingEvent:
    status: TrackingStatus
    details: str | None
    occurred_at: dt.datetime | None
    location: str | None = None
    substatus: str | None = None


@dataclass(frozen=True)
class Tracking:
    carrier: str
    tracking_number: str
    status: TrackingStatus
    eta: dt.datetime | None
    events: list[TrackingEvent]  # oldest first
    # What the label or track registration carried ("order:<uuid>"), when the carrier says.
    metadata: str | None = None
    # Where the parcel is going, when the carrier says: a delivery elsewhere is not ours.
    destination_zip: str | None = None


class CarrierError(Exception):
    """The carrier refused or failed. `retryable` says whether trying again later may work."""

    retryable = False

    def __init__(self, detail: str, messages: list[CarrierMessage] | None = None) -> None:
        self.detail = detail
        self.messages = messages or []
        texts = "; ".join(m.text for m in self.messages)
        super().__init__(f"{detail}: {texts}" if texts else detail)


class CarrierRejected(CarrierError):
    """A definite answer: the request was understood and refused (4xx, status ERROR)."""


class CarrierUnavailable(CarrierError):
    """Timeout, connection failure, 5xx or rate limit: the outcome of a write is unknown."""

    retryable = True

    def __init__(
        self,
        detail: str,
        messages: list[CarrierMessage] | None = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(detail, messages)
        self.retry_after = retry_after


class Carrier(Protocol):
    name: str

    async def validate_address(self, address: Address) -> AddressValidation: ...

    async def get_rates(
        self,
        address_from: Address,
        address_to: Address,
        parcel: Parcel,
        *,
        metadata: str,
        extras: Extras = NO_EXTRAS,
    ) -> Shipment: ...

    async def purchase_label(
        self, rate_id: str, *, metadata: str, label_file_type: str
    ) -> LabelTransaction:
        """Create the transaction. It may come back WAITING/QUEUED: record its id, then wait."""
        ...

    async def get_transaction(self, transaction_id: str) -> LabelTransaction: ...

    async def find_transactions(
        self,
        rate_id: str,
        *,
        metadata: str,
        created_after: dt.datetime,
        created_before: dt.datetime,
    ) -> list[LabelTransaction]:
        """Transactions of this rate carrying this metadata, created in the window (recovers a
        purchase whose reply was lost). Raises CarrierUnavailable when it cannot finish the
        search: an empty list must mean "none was bought"."""
        ...

    async def download_label(self, transaction: LabelTransaction) -> bytes: ...

    async def refund_label(self, transaction_id: str) -> Refund: ...

    async def find_refund(self, transaction_id: str) -> Refund | None:
        """The refund already asked for this transaction, or None if none was found: a refund
        job whose record was lost records it instead of asking twice."""
        ...

    async def get_tracking(self, carrier: str, tracking_number: str) -> Tracking: ...


async def wait_for_transaction(
    carrier: Carrier,
    transaction: LabelTransaction,
    *,
    within: float,
    first_delay: float = 0.5,
    max_delay: float = 5.0,
) -> LabelTransaction:
    """Poll a WAITING/QUEUED transaction with bounded backoff until it settles or `within`
    seconds pass (then raise CarrierUnavailable: a later attempt picks the same transaction
    up)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    delay = first_delay
    while transaction.status.pending:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise CarrierUnavailable(
                f"transaction {transaction.transaction_id} still {transaction.status} "
                f"after {within:.0f} s"
            )
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, max_delay)
        transaction = await carrier.get_transaction(transaction.transaction_id)
    return transaction
