"""Rates for an order: from the seller's address to the warehouse, for the device's parcel.

Three steps, so that no transaction (and no pooled connection) is held while the carrier
answers: `plan` reads the order and its address in a short seller transaction, `fetch` asks
the carrier with none open, and `record` re-checks under the order's lock and keeps the
quotes (and the carrier's verdict on the address) in a second one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from refit import resources, transactions
from refit.carriers.interface import Address, Carrier, Extras, Parcel, Rate, Shipment
from refit.errors import Conflict, Unprocessable
from refit.models import Order, OrderStatus, ShippingAddress
from refit.models.shipping import RateQuote
from refit.orders.service import get_order
from refit.settings import Settings
from refit.shipping import addresses
from refit.shipping.addresses import AddressSnapshot, Verdict
from refit.shipping.parcels import category_of, parcel_for, protection

# Shippo rates can be bought for 7 days; we stop a day short.
QUOTE_VALIDITY = dt.timedelta(days=6)
RATES_CACHE_SECONDS = 15 * 60


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


async def order_address(
    session: AsyncSession, order: Order, *, lock: bool = False
) -> ShippingAddress:
    """The order's address (`lock`: FOR UPDATE, re-read, until the transaction ends)."""
    if order.shipping_address_id is None:
        raise Conflict("The order has no shipping address", code="no_shipping_address")
    address = await session.get(
        ShippingAddress, order.shipping_address_id, with_for_update=lock, populate_existing=lock
    )
    if address is None:
        raise Conflict("The order's shipping address is gone", code="no_shipping_address")
    return address


@dataclass(frozen=True)
class RatingPlan:
    """What rating an order needs, read in one transaction (plain values, no ORM rows)."""

    order_id: uuid.UUID
    parcel: Parcel
    address: AddressSnapshot
    # Insurance and signature, by the device's quoted value (parcels.protection).
    extras: Extras


@dataclass(frozen=True)
class Rated:
    """The carrier's answers: its verdict on the address and the shipment's rates."""

    carrier_name: str
    verdict: Verdict
    shipment: Shipment
    quoted_at: dt.datetime


async def plan(session: AsyncSession, order_id: uuid.UUID) -> RatingPlan:
    """Step 1, in the seller's transaction (RLS proves the order is theirs)."""
    order = await get_order(session, order_id)
    _require_pending(order)
    address = await order_address(session, order)
    return RatingPlan(
        order.id,
        parcel_for(category_of(order)),
        AddressSnapshot.of(address),
        protection(resources.current().settings, order, home=False),
    )


async def fetch(carrier: Carrier, plan: RatingPlan) -> Rated:
    """Step 2, with no transaction open: the carrier's verdict on the address (unless one is
    on record), then its rates; 422 `address_invalid` or `no_rates` when it says no."""
    verdict = plan.address.verdict_on_record(carrier.name) or await addresses.check(
        carrier, plan.address
    )
    addresses.require_deliverable(verdict)
    shipment, quoted_at = await _shipment(carrier, plan)
    if not shipment.rates:
        raise Unprocessable(
            "The carrier offers no service from this address",
            code="no_rates",
            extra={"messages": [m.as_dict() for m in shipment.messages]},
        )
    return Rated(carrier.name, verdict, shipment, quoted_at)


async def record(session: AsyncSession, plan: RatingPlan, rated: Rated) -> list[RateQuote]:
    """Step 3, in a second seller transaction: still pending, still the address that was
    rated (409 `address_changed` if not), then the verdict kept and the rates recorded as
    quotes, so purchase-label can only buy one of them."""
    order = await get_order(session, plan.order_id, for_update=True)
    _require_pending(order)
    address = await order_address(session, order, lock=True)
    if not addresses.record_validation(address, rated.verdict):
        raise Conflict(
            "The shipping address changed while the carrier was rating it; ask for rates again",
            code="address_changed",
        )
    # The seller may have asked the carrier again meanwhile: the newest verdict decides.
    addresses.require_deliverable(
        addresses.verdict_on_record(address, rated.carrier_name) or rated.verdict
    )
    rows = [
        {
            "order_id": order.id,
            "rate_id": rate.rate_id,
            "carrier_name": rated.carrier_name,
            "shipment_id": rated.shipment.shipment_id,
            "carrier": rate.carrier,
            "service": rate.service,
            "service_token": rate.service_token,
            "amount": rate.amount,
            "currency": rate.currency,
            "estimated_days": rate.estimated_days,
            "address_fingerprint": plan.address.fingerprint,
            "quoted_at": rated.quoted_at,
            "expires_at": rated.quoted_at + QUOTE_VALIDITY,
        }
        for rate in rated.shipment.rates
    ]
    # Quotes are a system table: written with the service role, after RLS let us read the
    # order above.
    async with transactions.as_service(session):
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


def _require_pending(order: Order) -> None:
    if order.status != OrderStatus.PENDING:
        raise Conflict(
            f"The order is {order.status}; rates are for orders waiting for a label",
            code="invalid_order_state",
        )


async def _shipment(carrier: Carrier, plan: RatingPlan) -> tuple[Shipment, dt.datetime]:
    # Keyed by order as well as by (address, parcel): a carrier's rate object is bought at
    # most once and its shipment carries the order's metadata, so orders never share one.
    res = resources.current()
    parts = [
        carrier.name,
        str(plan.order_id),
        plan.address.fingerprint,
        json.dumps({k: str(v) for k, v in asdict(plan.parcel).items()}, sort_keys=True),
        json.dumps(warehouse(res.settings).as_dict(), sort_keys=True),
        json.dumps({k: str(v) for k, v in asdict(plan.extras).items()}, sort_keys=True),
    ]
    digest = hashlib.sha256("|".join(parts).encode()).hexdigest()
    key = res.redis_key("shipping", "rates", digest)
    cached = await res.redis.get(key)
    if cached:
        return _shipment_from_json(json.loads(cached))
    shipment = await carrier.get_rates(
        plan.address.carrier_address,
        warehouse(res.settings),
        plan.parcel,
        metadata=f"order:{plan.order_id}",
        extras=plan.extras,
    )
    quoted_at = dt.datetime.now(dt.UTC)
    await _cache(res.redis, key, shipment, quoted_at)
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
