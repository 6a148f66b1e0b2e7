"""The operators' reads, for the API (/api/admin/orders) and the dashboard alike: the order
search, the order list, and the whole story of one order (order, inspection, payout, shipping).

Composed here, above the domains it reads, so none of them needs another's story. Operators
act as the service role (they see every order). Photo URLs in these answers are signed for a
few minutes (refit/signed_urls.py), like the seller's.
"""

from __future__ import annotations

import uuid
from typing import Any, cast

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from refit import pagination
from refit.backoffice.schemas import (
    AdminOrderDetail,
    AdminOrderPage,
    AdminOrderSummary,
    HistoryEntry,
    SellerRead,
)
from refit.inspection.evidence import evidence_read, photos_of
from refit.inspection.schemas import AddressRead, InspectionRead
from refit.models import Order, OrderStatus, ShippingAddress, User
from refit.models.inspection import Inspection
from refit.models.payout import Payout
from refit.orders.reads import history_of
from refit.orders.schemas import AdminOrderRead
from refit.orders.service import get_order
from refit.payouts.schemas import PayoutRead
from refit.settings import Settings
from refit.shipping.tracking import tracking


def _like(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def order_search(term: str) -> ColumnElement[bool]:
    """The operators' one order search, for a query joining `User` to `Order`: part of the
    order number, tracking number or email (any case), or the start of the wallet address."""
    like = _like(term)
    return or_(
        Order.order_number.ilike(like, escape="\\"),
        Order.tracking_number.ilike(like, escape="\\"),
        User.email.ilike(like, escape="\\"),
        # base58 is case-sensitive: the start of the address, as typed.
        User.wallet_address.like(like[1:], escape="\\"),
    )


async def list_orders(
    session: AsyncSession,
    *,
    status: OrderStatus | None,
    q: str | None,
    limit: int,
    cursor: str | None,
) -> AdminOrderPage:
    """Newest first (the one cursor codec's order). `q` matches part of the order number,
    tracking number or email (any case), or the start of the wallet address (exact case:
    base58 is case-sensitive)."""
    query = select(Order, User.wallet_address, User.email).join(User, User.id == Order.user_id)
    if status is not None:
        query = query.where(Order.status == status)
    term = (q or "").strip()
    if term:
        query = query.where(order_search(term))
    # newest_first is typed for one-entity selects; this one carries two user columns too.
    paged: Any = pagination.newest_first(cast(Any, query), Order, limit=limit, cursor=cursor)
    rows = (await session.execute(paged)).all()
    summaries = [
        AdminOrderSummary(
            id=order.id,
            order_number=order.order_number,
            status=order.status,
            device_brand=order.device_brand,
            device_model=order.device_model,
            device_storage=order.device_storage,
            device_condition=order.device_condition,
            quoted_price_usd=order.quoted_price_usd,
            final_price_usd=order.final_price_usd,
            tracking_number=order.tracking_number,
            attention_reason=order.attention_reason,
            user_id=order.user_id,
            wallet_address=wallet,
            email=email,
            created_at=order.created_at,
            updated_at=order.updated_at,
        )
        for order, wallet, email in rows
    ]
    items, next_cursor = pagination.page(summaries, limit)
    return AdminOrderPage(items=items, next_cursor=next_cursor)


async def order_story(
    session: AsyncSession, settings: Settings, order_id: uuid.UUID
) -> AdminOrderDetail:
    """The seller, address, label, tracking, history (with who did what), inspection,
    evidence and payout of one order."""
    order = await get_order(session, order_id)
    seller = await session.get(User, order.user_id)
    assert seller is not None  # orders.user_id is a foreign key
    address = (
        await session.get(ShippingAddress, order.shipping_address_id)
        if order.shipping_address_id
        else None
    )
    history = await history_of(session, order.id)
    inspection = await session.scalar(select(Inspection).where(Inspection.order_id == order.id))
    photos = await photos_of(session, order.id)
    payout = await session.scalar(select(Payout).where(Payout.order_id == order.id))
    return AdminOrderDetail(
        order=AdminOrderRead.model_validate(order),
        seller=SellerRead(
            id=seller.id,
            wallet_address=seller.wallet_address,
            email=seller.email,
            email_verified=seller.email_verified,
        ),
        address=AddressRead.model_validate(address) if address else None,
        tracking=await tracking(session, order),
        history=[HistoryEntry.model_validate(h) for h in history],
        inspection=InspectionRead.model_validate(inspection) if inspection else None,
        evidence=[evidence_read(settings, p) for p in photos],
        payout=PayoutRead.model_validate(payout) if payout else None,
    )
