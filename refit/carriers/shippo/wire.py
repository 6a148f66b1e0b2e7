"""Shippo's wire format: the bodies we send, the objects it answers and posts to our webhook
endpoint, read into the carrier interface's terms, and its webhook signature. No I/O here: the
HTTP client (client.py) sends and receives, the sandbox carrier builds the same bodies.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from dataclasses import fields
from decimal import Decimal, InvalidOperation
from typing import Any

from refit.carriers.interface import (
    Address,
    AddressValidation,
    CarrierError,
    CarrierMessage,
    CarrierRejected,
    CarrierUnavailable,
    Extras,
    LabelTransaction,
    Parcel,
    Rate,
    Refund,
    Shipment,
    Tracking,
    TrackingEvent,
    TrackingStatus,
    TransactionStatus,
)

# --- what we send ------------------------------------------------------------------------


def address_request(address: Address) -> dict[str, Any]:
    return {**address.as_dict(), "validate": True}


def shipment_request(
    address_from: Address, address_to: Address, parcel: Parcel, *, metadata: str, extras: Extras
) -> dict[str, Any]:
    request: dict[str, Any] = {
        "address_from": address_from.as_dict(),
        "address_to": address_to.as_dict(),
        "parcels": [
            {
                "length": str(parcel.length),
                "width": str(parcel.width),
                "height": str(parcel.height),
                "distance_unit": parcel.distance_unit,
                "weight": str(parcel.weight),
                "mass_unit": parcel.mass_unit,
            }
        ],
        "metadata": metadata,
        "async": False,
    }
    extra = shipment_extra(extras)
    if extra:
        request["extra"] = extra
    return request


def shipment_extra(extras: Extras) -> dict[str, Any]:
    """Shippo's ShipmentExtras for `extras`: `insurance` {amount, currency, content} (Shippo's
    own insurance when no provider is named, available for every carrier) and
    `signature_confirmation`. Our return label home is an ordinary shipment from the warehouse
    to the seller: Shippo's `is_return` is for the other way round (a customer sending back
    an outbound parcel, REFERENCE 1.4), so it is never set here."""
    extra: dict[str, Any] = {}
    if extras.insurance_usd is not None and extras.insurance_usd > 0:
        extra["insurance"] = {
            "amount": f"{extras.insurance_usd:.2f}",
            "currency": "USD",
            "content": extras.content,
        }
    if extras.signature:
        extra["signature_confirmation"] = "STANDARD"
    return extra


def transaction_request(rate_id: str, *, metadata: str, label_file_type: str) -> dict[str, Any]:
    return {
        "rate": rate_id,
        "label_file_type": label_file_type,
        "metadata": metadata,
        "async": False,
    }


def refund_request(transaction_id: str) -> dict[str, Any]:
    return {"transaction": transaction_id, "async": False}


def shippo_time(value: dt.datetime) -> str:
    # Shippo takes ISO 8601 in UTC and no offsets ("2017-01-01T03:30:30Z").
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sign(secret: str, stamp: int, raw: bytes) -> str:
    """Shippo's webhook signature of `raw` sent at `stamp` (Unix time): the hex
    HMAC-SHA256(secret, "<stamp>.<body>") its `t=<stamp>,v1=<signature>` header carries
    (REFERENCE 1.6). Our intake checks it; the sandbox carrier signs with it."""
    return hmac.new(secret.encode(), f"{stamp}.".encode() + raw, hashlib.sha256).hexdigest()


# --- what Shippo answers -----------------------------------------------------------------


def parse_address_validation(body: dict[str, Any], *, sent: Address) -> AddressValidation:
    results = body.get("validation_results") or {}
    messages = [parse_message(m) for m in results.get("messages") or []]
    # Shippo does not validate some addresses (non-US in test mode): no verdict is not a no.
    is_valid = results.get("is_valid") is not False
    returned = _address(body, fallback=sent)
    recommended = returned if is_valid and _differs(returned, sent) else None
    return AddressValidation(
        is_valid=is_valid,
        messages=messages,
        recommended=recommended,
        carrier_object_id=body.get("object_id"),
    )


def parse_shipment(body: dict[str, Any]) -> Shipment:
    messages = [parse_message(m) for m in body.get("messages") or []]
    if body.get("status") == "ERROR":
        raise CarrierRejected("Shippo could not rate this shipment", messages)
    rates = [_rate(r) for r in body.get("rates") or []]
    return Shipment(
        shipment_id=body["object_id"],
        rates=sorted(rates, key=lambda r: r.amount),
        messages=messages,
    )


def parse_refund(body: dict[str, Any], transaction_id: str) -> Refund:
    return Refund(
        refund_id=body["object_id"],
        transaction_id=body.get("transaction") or transaction_id,
        status=str(body.get("status") or "QUEUED"),
    )


def parse_error_messages(body: Any) -> list[CarrierMessage]:
    """The messages of an error answer's JSON body."""
    if isinstance(body, dict):
        if isinstance(body.get("messages"), list):
            return [parse_message(m) for m in body["messages"]]
        # Shippo's 400s are keyed by field: {"rate": ["Rate has expired"]} or {"detail": "..."}.
        found = []
        for key, value in body.items():
            for text in value if isinstance(value, list) else [value]:
                found.append(CarrierMessage(text=str(text), code=key))
        return found
    return [CarrierMessage(text=str(body)[:500])]


def parse_message(raw: Any) -> CarrierMessage:
    if not isinstance(raw, dict):
        return CarrierMessage(text=str(raw))
    return CarrierMessage(
        text=str(raw.get("text") or raw.get("code") or ""),
        code=raw.get("code"),
        source=raw.get("source"),
        type=raw.get("type"),
    )


def _address(body: dict[str, Any], *, fallback: Address) -> Address:
    def pick(key: str) -> Any:
        value = body.get(key)
        return value if value not in (None, "") else getattr(fallback, key)

    return Address(**{f.name: pick(f.name) for f in fields(Address)})


def _differs(returned: Address, sent: Address) -> bool:
    def norm(value: str | None) -> str:
        return " ".join((value or "").upper().split())

    return any(
        norm(getattr(returned, f)) != norm(getattr(sent, f))
        for f in ("street1", "street2", "city", "state", "zip", "country")
    )


def _rate(raw: dict[str, Any]) -> Rate:
    level = raw.get("servicelevel") or {}
    try:
        amount = Decimal(str(raw["amount"]))
    except (KeyError, InvalidOperation) as exc:
        raise CarrierError(f"rate {raw.get('object_id')} has no usable amount") from exc
    days = raw.get("estimated_days")
    return Rate(
        rate_id=raw["object_id"],
        carrier=str(raw.get("provider") or ""),
        service=str(level.get("name") or level.get("token") or ""),
        service_token=level.get("token"),
        amount=amount,
        currency=str(raw.get("currency") or "USD"),
        estimated_days=int(days) if days is not None else None,
    )


def parse_transaction(raw: dict[str, Any]) -> LabelTransaction:
    """A Shippo Transaction object (an API answer or a transaction_updated webhook's data)."""
    rate = raw.get("rate")
    rate_id = rate.get("object_id") if isinstance(rate, dict) else rate
    try:
        status = TransactionStatus(str(raw.get("status")))
    except ValueError as exc:
        raise CarrierUnavailable(f"unknown transaction status {raw.get('status')!r}") from exc
    return LabelTransaction(
        transaction_id=raw["object_id"],
        status=status,
        rate_id=rate_id,
        metadata=raw.get("metadata"),
        tracking_number=raw.get("tracking_number") or None,
        label_url=raw.get("label_url") or None,
        messages=[parse_message(m) for m in raw.get("messages") or []],
        eta=raw.get("eta"),
    )


def parse_track(
    body: dict[str, Any], *, carrier: str | None = None, tracking_number: str | None = None
) -> Tracking:
    """A Shippo Track object (GET /tracks/..., or a track_updated webhook's data). The
    current status is also an event: a webhook's history may not list it yet."""
    history = [_event(e) for e in body.get("tracking_history") or [] if isinstance(e, dict)]
    current = body.get("tracking_status")
    latest = _event(current) if isinstance(current, dict) else None
    if latest is not None and all(
        (e.status, e.occurred_at) != (latest.status, latest.occurred_at) for e in history
    ):
        history.append(latest)
    address_to = body.get("address_to")
    return Tracking(
        carrier=str(body.get("carrier") or carrier or ""),
        tracking_number=str(body.get("tracking_number") or tracking_number or ""),
        status=latest.status if latest else TrackingStatus.UNKNOWN,
        eta=_datetime(body.get("eta")),
        events=history,
        metadata=body.get("metadata") or None,
        destination_zip=(address_to.get("zip") or None) if isinstance(address_to, dict) else None,
    )


def track_body(tracking: Tracking) -> dict[str, Any]:
    """`tracking` as Shippo's Track object: what the sandbox carrier sends in its webhooks."""
    history = [
        {
            "object_id": f"ts_{index}",
            "status": event.status.value,
            "status_details": event.details,
            "status_date": event.occurred_at.isoformat() if event.occurred_at else None,
            "substatus": {"code": event.substatus} if event.substatus else None,
            "location": {"city": event.location} if event.location else None,
        }
        for index, event in enumerate(tracking.events)
    ]
    return {
        "carrier": tracking.carrier,
        "tracking_number": tracking.tracking_number,
        "eta": tracking.eta.isoformat() if tracking.eta else None,
        "metadata": tracking.metadata,
        "address_to": {"zip": tracking.destination_zip} if tracking.destination_zip else None,
        "tracking_status": history[-1] if history else None,
        "tracking_history": history,
    }


def _event(raw: dict[str, Any]) -> TrackingEvent:
    try:
        status = TrackingStatus(str(raw.get("status")))
    except ValueError:
        status = TrackingStatus.UNKNOWN
    location = raw.get("location") or {}
    place = ", ".join(str(location[k]) for k in ("city", "state", "country") if location.get(k))
    substatus = raw.get("substatus") or {}
    return TrackingEvent(
        status=status,
        details=raw.get("status_details"),
        occurred_at=_datetime(raw.get("status_date")),
        location=place or None,
        # Shippo's substatus codes are opaque strings (its list is not published with the API).
        substatus=substatus.get("code") if isinstance(substatus, dict) else None,
    )


def _datetime(raw: Any) -> dt.datetime | None:
    if not raw:
        return None
    try:
        return dt.datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        return None
