"""Sellers' shipping addresses. Every function runs in the seller's RLS-filtered session."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import uuid
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy import and_, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from refit.addresses.schemas import AddressCreate, AddressFields, AddressUpdate
from refit.errors import BadRequest, Conflict, NotFound
from refit.models import Order, OrderStatus, ShippingAddress
from refit.shipping.carrier import Address, AddressValidation

MAX_ADDRESSES_PER_USER = 50
CONTENT_FIELDS = ("name", "street1", "street2", "city", "state", "zip", "country", "phone")
# Orders still needing the seller's address: the label is not bought yet, or the device may
# come back to them.
LIVE_STATUSES = tuple(
    s.value for s in OrderStatus if s not in (OrderStatus.COMPLETED, OrderStatus.CANCELLED)
)


def fingerprint(address: ShippingAddress | AddressFields) -> str:
    """What a carrier sees of an address (no phone): equal fingerprints, same rates."""
    parts = [
        " ".join(str(getattr(address, f) or "").upper().split())
        for f in ("name", "street1", "street2", "city", "state", "zip", "country")
    ]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def to_carrier_address(address: ShippingAddress | AddressFields) -> Address:
    return Address(
        name=address.name,
        street1=address.street1,
        street2=address.street2 or None,
        city=address.city,
        state=address.state,
        zip=address.zip,
        country=address.country,
        phone=address.phone or None,
    )


async def _lock_user_addresses(session: AsyncSession, user_id: uuid.UUID) -> None:
    # Serialises default changes of one seller: two concurrent "make default" requests would
    # otherwise race into the one-default unique index and one would fail with a 500.
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"addresses:{user_id}"},
    )


async def _unset_default(session: AsyncSession, user_id: uuid.UUID) -> None:
    await session.execute(
        update(ShippingAddress)
        .where(ShippingAddress.user_id == user_id, ShippingAddress.is_default)
        .values(is_default=False)
    )


def _encode_cursor(address: ShippingAddress) -> str:
    raw = json.dumps([address.created_at.isoformat(), str(address.id)])
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _decode_cursor(cursor: str) -> tuple[dt.datetime, uuid.UUID]:
    try:
        created, ident = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return dt.datetime.fromisoformat(created), uuid.UUID(ident)
    except (ValueError, TypeError) as exc:
        raise BadRequest("The cursor is not one we issued", code="invalid_cursor") from exc


async def list_addresses(
    session: AsyncSession, *, limit: int, cursor: str | None
) -> tuple[list[ShippingAddress], str | None]:
    query = select(ShippingAddress).order_by(
        ShippingAddress.created_at.desc(), ShippingAddress.id.desc()
    )
    if cursor:
        created, ident = _decode_cursor(cursor)
        query = query.where(
            or_(
                ShippingAddress.created_at < created,
                and_(ShippingAddress.created_at == created, ShippingAddress.id < ident),
            )
        )
    rows = list((await session.scalars(query.limit(limit + 1))).all())
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (_encode_cursor(rows[-1]) if more and rows else None)


async def get_address(
    session: AsyncSession, address_id: uuid.UUID, *, for_update: bool = False
) -> ShippingAddress:
    query = select(ShippingAddress).where(ShippingAddress.id == address_id)
    if for_update:
        query = query.with_for_update()
    address = await session.scalar(query)
    if address is None:  # someone else's address is invisible under RLS: also a 404
        raise NotFound("No such address", code="address_not_found")
    return address


async def create_address(
    session: AsyncSession, user_id: uuid.UUID, data: AddressCreate
) -> ShippingAddress:
    """Create an address; the first one, or one marked default, becomes the default."""
    await _lock_user_addresses(session, user_id)
    count, has_default = (
        await session.execute(
            select(func.count(), func.bool_or(ShippingAddress.is_default)).where(
                ShippingAddress.user_id == user_id
            )
        )
    ).one()
    if count >= MAX_ADDRESSES_PER_USER:
        raise Conflict(
            f"At most {MAX_ADDRESSES_PER_USER} addresses per account; delete one first",
            code="too_many_addresses",
        )
    make_default = data.is_default or not has_default
    if make_default:
        await _unset_default(session, user_id)
    address = ShippingAddress(
        user_id=user_id, is_default=make_default, **data.model_dump(exclude={"is_default"})
    )
    session.add(address)
    await session.flush()
    await session.refresh(address)
    return address


async def update_address(
    session: AsyncSession, user_id: uuid.UUID, address_id: uuid.UUID, patch: AddressUpdate
) -> ShippingAddress:
    await _lock_user_addresses(session, user_id)
    address = await get_address(session, address_id, for_update=True)
    changes = patch.model_dump(exclude_unset=True)
    is_default = changes.pop("is_default", None)
    merged = {f: getattr(address, f) for f in CONTENT_FIELDS} | changes
    try:
        checked = AddressFields.model_validate(merged)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from exc
    new_values = checked.model_dump()
    if any(new_values[f] != getattr(address, f) for f in CONTENT_FIELDS):
        if fingerprint(checked) != fingerprint(address):
            # A different place: the carrier's verdict on the old one no longer applies.
            address.is_validated = False
            address.validation_data = None
        for field, value in new_values.items():
            setattr(address, field, value)
    if is_default is True and not address.is_default:
        await _unset_default(session, user_id)
        await session.flush()
        address.is_default = True
    elif is_default is False:
        address.is_default = False
    await session.flush()
    await session.refresh(address)
    return address


async def delete_address(session: AsyncSession, address_id: uuid.UUID) -> None:
    address = await get_address(session, address_id, for_update=True)
    in_use = await session.scalar(
        select(Order.order_number)
        .where(Order.shipping_address_id == address.id, Order.status.in_(LIVE_STATUSES))
        .limit(1)
    )
    if in_use:
        raise Conflict(
            f"Order {in_use} still ships from this address; it can be deleted once the order "
            "is completed or cancelled",
            code="address_in_use",
        )
    await session.delete(address)
    await session.flush()


def validation_record(
    result: AddressValidation, *, carrier: str, address_print: str
) -> dict[str, Any]:
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


def recommended(result: AddressValidation) -> dict[str, Any] | None:
    if result.recommended is None:
        return None
    r = result.recommended
    return {
        "name": r.name,
        "street1": r.street1,
        "street2": r.street2,
        "city": r.city,
        "state": r.state,
        "zip": r.zip,
        "country": r.country,
    }


async def record_validation(
    session: AsyncSession, address: ShippingAddress, result: AddressValidation, *, carrier: str
) -> None:
    address.is_validated = result.is_valid
    address.validation_data = validation_record(
        result, carrier=carrier, address_print=fingerprint(address)
    )
    await session.flush()
