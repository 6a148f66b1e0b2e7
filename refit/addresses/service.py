"""Sellers' shipping addresses. Every function runs in the seller's RLS-filtered session.

What carriers make of an address (validation, their form of it) is shipping's business
(refit/shipping/addresses.py); this domain only says which fields make a place.
"""

from __future__ import annotations

import hashlib
import uuid

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from refit.addresses.schemas import (
    ADDRESS_FIELDS,
    PLACE_FIELDS,
    AddressCreate,
    AddressFields,
    AddressUpdate,
)
from refit.errors import Conflict, NotFound
from refit.models import Order, OrderStatus, ShippingAddress
from refit.pagination import newest_first, page

MAX_ADDRESSES_PER_USER = 50
# Orders still needing the seller's address: the label is not bought yet, or the device may
# come back to them.
LIVE_STATUSES = tuple(
    s.value
    for s in OrderStatus
    if s not in (OrderStatus.COMPLETED, OrderStatus.CANCELLED, OrderStatus.IMPORTED)
)


def fingerprint(address: ShippingAddress | AddressFields) -> str:
    """What a carrier sees of an address (no phone): equal fingerprints, same rates."""
    parts = [" ".join(str(getattr(address, f) or "").upper().split()) for f in PLACE_FIELDS]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


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


async def list_addresses(
    session: AsyncSession, *, limit: int, cursor: str | None
) -> tuple[list[ShippingAddress], str | None]:
    query = newest_first(select(ShippingAddress), ShippingAddress, limit=limit, cursor=cursor)
    return page((await session.scalars(query)).all(), limit)


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
    merged = {f: getattr(address, f) for f in ADDRESS_FIELDS} | changes
    try:
        checked = AddressFields.model_validate(merged)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from exc
    new_values = checked.model_dump()
    if any(new_values[f] != getattr(address, f) for f in ADDRESS_FIELDS):
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
