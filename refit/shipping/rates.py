"""Rates for an order: from the seller's address to the warehouse, for the device's parcel."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from dataclasses import asdict
from decimal import Decimal
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from refit import db
from refit.addresses import service as addresses
from refit.errors import Conflict, NotFound, Unprocessable
from refit.models import Order, OrderStatus, ShippingAddress
from refit.resources import Resources
from refit.settings import Settings
from refit.shipping.carrier import (
    Address,
    AddressValidation,
    Carrier,
    CarrierMessage,
    Parcel,
    Rate,
    Shipment,
)
from refit.shipping.models import RateQuote
from refit.shipping.parcels import category_of, parcel_for

# Shippo rates can be bought for 7 days; we stop a day short.
QUOTE_VALIDITY = dt.timedelta(days=6)
RATES_CACHE_SECONDS = 15 * 60
VALIDATION_CACHE_SECONDS = 24 * 3600


def warehouse(settings: Settings) -> Address:
    return Address(
        name=settings.warehouse_name,
        company=settings.warehouse_company,
        street1=settings.warehouse_street1,
        street2=settings.warehouse_street2,
        city=settings.warehouse_city,
        state=settings.warehouse_state,
        zip=settings.warehouse_zip,
        country=settings.warehouse_country,
        phone=settings.warehouse_phone,
        email=settings.warehouse_email,
    )


async def load_order(session: AsyncSession, order_id: uuid.UUID, *, lock: bool = False) -> Order:
    query = select(Order).where(Order.id == order_id)
    if lock:
        query = query.with_for_update()
    order = await session.scalar(query)
    if order is None:  # another seller's order is invisible under RLS: a 404 too
        raise NotFound("No such order", code="order_not_found")
    return order


async def order_address(session: AsyncSession, order: Order) -> ShippingAddress:
    if order.shipping_address_id is None:
        raise Conflict("The order has no shipping address", code="no_shipping_address")
    address = await session.get(ShippingAddress, order.shipping_address_id)
    if address is None:
        raise Conflict("The order's shipping address is gone", code="no_shipping_address")
    return address


async def ensure_deliverable(
    session: AsyncSession, resources: Resources, carrier: Carrier, address: ShippingAddress
) -> None:
    """The carrier's verdict on the address (kept on it; cached a day by content). Raise 422
    `address_invalid` with the carrier's messages when it says no."""
    print_ = addresses.fingerprint(address)
    data = address.validation_data or {}
    if data.get("fingerprint") != print_ or data.get("carrier") != carrier.name:
        key = resources.redis_key("shipping", "validation", carrier.name, print_)
        cached = await resources.redis.get(key)
        if cached:
            result = _validation_from_json(json.loads(cached))
        else:
            result = await carrier.validate_address(addresses.to_carrier_address(address))
            await resources.redis.set(
                key, json.dumps(_validation_to_json(result)), ex=VALIDATION_CACHE_SECONDS
            )
        # The verdict is kept even if this request then fails: the cache above covers the
        # rollback, the column covers the next successful request.
        await addresses.record_validation(session, address, result, carrier=carrier.name)
        data = address.validation_data or {}
    if not data.get("is_valid"):
        raise Unprocessable(
            "The carrier cannot deliver to this address; correct it and try again",
            code="address_invalid",
            extra={"messages": data.get("messages") or []},
        )


async def quote_rates(
    session: AsyncSession, resources: Resources, carrier: Carrier, order_id: uuid.UUID
) -> list[RateQuote]:
    """Rates for the order (seller's session: RLS proves ownership), recorded as quotes so
    purchase-label can only buy one of them."""
    order = await load_order(session, order_id)
    if order.status != OrderStatus.PENDING:
        raise Conflict(
            f"The order is {order.status}; rates are for orders waiting for a label",
            code="invalid_order_state",
        )
    address = await order_address(session, order)
    await ensure_deliverable(session, resources, carrier, address)
    parcel = parcel_for(category_of(order))
    shipment, quoted_at = await _shipment(resources, carrier, order, address, parcel)
    print_ = addresses.fingerprint(address)
    rows = [
        {
            "order_id": order.id,
            "rate_id": rate.rate_id,
            "carrier_name": carrier.name,
            "shipment_id": shipment.shipment_id,
            "carrier": rate.carrier,
            "service": rate.service,
            "service_token": rate.service_token,
            "amount": rate.amount,
            "currency": rate.currency,
            "estimated_days": rate.estimated_days,
            "address_fingerprint": print_,
            "quoted_at": quoted_at,
            "expires_at": quoted_at + QUOTE_VALIDITY,
        }
        for rate in shipment.rates
    ]
    if not rows:
        raise Unprocessable(
            "The carrier offers no service from this address",
            code="no_rates",
            extra={"messages": [m.as_dict() for m in shipment.messages]},
        )
    # Quotes are a system table: written with the service role, after RLS let us read the
    # order above.
    async with db.as_service(session):
        await session.execute(
            insert(RateQuote)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["order_id", "rate_id"])
        )
        quotes = (
            await session.scalars(
                select(RateQuote)
                .where(
                    RateQuote.order_id == order.id,
                    RateQuote.rate_id.in_([r["rate_id"] for r in rows]),
                )
                .order_by(RateQuote.amount)
            )
        ).all()
    return list(quotes)


async def _shipment(
    resources: Resources, carrier: Carrier, order: Order, address: ShippingAddress, parcel: Parcel
) -> tuple[Shipment, dt.datetime]:
    # Keyed by order as well as by (address, parcel): a carrier's rate object is bought at
    # most once and its shipment carries the order's metadata, so orders never share one.
    settings = resources.settings
    parts = [
        carrier.name,
        str(order.id),
        addresses.fingerprint(address),
        json.dumps({k: str(v) for k, v in asdict(parcel).items()}, sort_keys=True),
        json.dumps(warehouse(settings).as_dict(), sort_keys=True),
    ]
    digest = hashlib.sha256("|".join(parts).encode()).hexdigest()
    key = resources.redis_key("shipping", "rates", digest)
    cached = await resources.redis.get(key)
    if cached:
        return _shipment_from_json(json.loads(cached))
    shipment = await carrier.get_rates(
        addresses.to_carrier_address(address),
        warehouse(settings),
        parcel,
        metadata=f"order:{order.id}",
    )
    quoted_at = dt.datetime.now(dt.UTC)
    await _cache(resources.redis, key, shipment, quoted_at)
    return shipment, quoted_at


async def _cache(redis: Redis, key: str, shipment: Shipment, quoted_at: dt.datetime) -> None:
    payload = {
        "shipment_id": shipment.shipment_id,
        "quoted_at": quoted_at.isoformat(),
        "rates": [{**asdict(r), "amount": str(r.amount)} for r in shipment.rates],
    }
    await redis.set(key, json.dumps(payload), ex=RATES_CACHE_SECONDS)


def _shipment_from_json(data: dict[str, Any]) -> tuple[Shipment, dt.datetime]:
    rates = [Rate(**{**r, "amount": Decimal(r["amount"])}) for r in data["rates"]]
    return (
        Shipment(shipment_id=data["shipment_id"], rates=rates),
        dt.datetime.fromisoformat(data["quoted_at"]),
    )


def _validation_to_json(result: AddressValidation) -> dict[str, Any]:
    return {
        "is_valid": result.is_valid,
        "messages": [m.as_dict() for m in result.messages],
        "recommended": result.recommended.as_dict() if result.recommended else None,
        "carrier_object_id": result.carrier_object_id,
    }


def _validation_from_json(data: dict[str, Any]) -> AddressValidation:
    return AddressValidation(
        is_valid=data["is_valid"],
        messages=[CarrierMessage(**m) for m in data["messages"]],
        recommended=Address(**data["recommended"]) if data["recommended"] else None,
        carrier_object_id=data.get("carrier_object_id"),
    )
