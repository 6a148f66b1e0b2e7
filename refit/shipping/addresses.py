"""Shipping's side of a seller's address: the form a carrier is sent, the carrier's verdict
on it (cached a day by content, kept on the address), and the rule that a label needs a yes.

The carrier is asked with no transaction open: a caller reads the address into an
`AddressSnapshot` in one short transaction, calls `check` with none open, and keeps the
verdict in a second one, where `record_validation` re-checks that the address is still the
place the carrier was asked about.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from refit import resources
from refit.addresses.schemas import ADDRESS_FIELDS, PLACE_FIELDS, AddressFields
from refit.addresses.service import fingerprint
from refit.carriers.interface import Address, AddressValidation, Carrier
from refit.errors import Unprocessable
from refit.models import ShippingAddress

VALIDATION_CACHE_SECONDS = 24 * 3600

# A carrier's verdict on one address, as `shipping_addresses.validation_data` keeps it (and the
# cache holds it): is_valid, messages, recommended_address, carrier, carrier_object_id,
# fingerprint (of the address it is about), validated_at.
Verdict = dict[str, Any]


def to_carrier_address(address: ShippingAddress | AddressFields) -> Address:
    # An empty optional line (street2, phone) is sent as absent, not as "".
    values: dict[str, Any] = {f: getattr(address, f) or None for f in ADDRESS_FIELDS}
    return Address(**values)


def recommended(result: AddressValidation) -> dict[str, Any] | None:
    """The carrier's own form of the place, which the seller may adopt."""
    if result.recommended is None:
        return None
    return {f: getattr(result.recommended, f) for f in PLACE_FIELDS}


def validation_record(result: AddressValidation, *, carrier: str, address_print: str) -> Verdict:
    """What `validation_data` keeps of a carrier's verdict."""
    return {
        "is_valid": result.is_valid,
        "messages": [m.as_dict() for m in result.messages],
        "recommended_address": recommended(result),
        "carrier": carrier,
        "carrier_object_id": result.carrier_object_id,
        "fingerprint": address_print,
        "validated_at": dt.datetime.now(dt.UTC).isoformat(),
    }


@dataclass(frozen=True)
class AddressSnapshot:
    """An address as one transaction read it: what the carrier is asked about once that
    transaction has ended."""

    fingerprint: str
    carrier_address: Address
    validation_data: Verdict | None = None

    @classmethod
    def of(cls, address: ShippingAddress | AddressFields) -> AddressSnapshot:
        return cls(
            fingerprint=fingerprint(address),
            carrier_address=to_carrier_address(address),
            validation_data=getattr(address, "validation_data", None),
        )

    def verdict_on_record(self, carrier: str) -> Verdict | None:
        return _current(self.validation_data, self.fingerprint, carrier)


def verdict_on_record(address: ShippingAddress, carrier: str) -> Verdict | None:
    """The carrier's verdict kept on the address, if it is about the address as it is now."""
    return _current(address.validation_data, fingerprint(address), carrier)


def _current(data: Verdict | None, address_print: str, carrier: str) -> Verdict | None:
    if data and data.get("fingerprint") == address_print and data.get("carrier") == carrier:
        return data
    return None


async def check(carrier: Carrier, target: AddressSnapshot, *, fresh: bool = False) -> Verdict:
    """The carrier's verdict on the address, from the day's cache unless `fresh` (the seller
    asked: the carrier may have changed its mind). Call it with no transaction open."""
    res = resources.current()
    key = res.redis_key("shipping", "verdict", carrier.name, target.fingerprint)
    if not fresh:
        cached = await res.redis.get(key)
        if cached:
            verdict: Verdict = json.loads(cached)
            return verdict
    result = await carrier.validate_address(target.carrier_address)
    verdict = validation_record(result, carrier=carrier.name, address_print=target.fingerprint)
    await res.redis.set(key, json.dumps(verdict), ex=VALIDATION_CACHE_SECONDS)
    return verdict


def record_validation(address: ShippingAddress, verdict: Verdict) -> bool:
    """Keep the verdict on the address (the caller holds its row lock), unless a newer one of
    the same carrier is already there. False when the address is no longer the place the
    verdict is about: it changed while the carrier was asked."""
    if fingerprint(address) != verdict["fingerprint"]:
        return False
    kept = verdict_on_record(address, verdict["carrier"])
    if kept is None or _validated_at(kept) < _validated_at(verdict):
        address.is_validated = bool(verdict["is_valid"])
        address.validation_data = verdict
    return True


def _validated_at(verdict: Verdict) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(verdict["validated_at"])
    except (KeyError, TypeError, ValueError):
        return dt.datetime.min.replace(tzinfo=dt.UTC)


def require_deliverable(verdict: Verdict) -> None:
    """422 `address_invalid`, with the carrier's messages, unless the verdict is a yes."""
    if not verdict.get("is_valid"):
        raise Unprocessable(
            "The carrier cannot deliver to this address; correct it and try again",
            code="address_invalid",
            extra={"messages": verdict.get("messages") or []},
        )
