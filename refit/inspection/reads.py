"""The operators' reads: the order list with its search, and the whole story of one order.

Operators act as the service role (they see every order). Photo URLs in these answers are
signed for a few minutes (refit/signed_urls.py), like the seller's.
"""

from __future__ import annotations

import uuid
from typing import Any, cast

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from refit import pagination
from refit.inspection.evidence import photos_of
from refit.inspection.schemas import (
    AddressRead,
    AdminOrderDetail,
    AdminOrderPage,
    AdminOrderRead,
    AdminOrderSummary,
    EvidenceRead,
    HistoryEntry,
    InspectionRead,
    SellerRead,
)
from refit.models import Order, OrderStatus, OrderStatusHistory, ShippingAddress, User
from refit.models.inspection import EvidencePhoto, Inspection
from refit.models.payout import Payout
from refit.orders.service import get_order
from refit.payouts.schemas import PayoutRead
from refit.settings import Settings
from refit.shipping.tracking import tracking
from refit.signed_urls import evidence_photo_url


def _like(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


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
        like = _like(term)
        query = query.where(
            or_(
                Order.order_number.ilike(like, escape="\\"),
                Order.tracking_number.ilike(like, escape="\\"),
                User.email.ilike(like, escape="\\"),
                User.wallet_address.like(like[1:], escape="\\"),
            )
        )
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


def evidence_read(settings: Settings, photo: EvidencePhoto) -> EvidenceRead:
    return EvidenceRead(
        id=photo.id,
        url=evidence_photo_url(settings, photo.id),
        content_type=photo.content_type,
        bytes=photo.bytes,
        width=photo.width,
        height=photo.height,
        sha256=photo.sha256,
        uploaded_by=photo.uploaded_by,
        created_at=photo.created_at,
    )


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
    history = (
        await session.scalars(
            select(OrderStatusHistory)
            .where(OrderStatusHistory.order_id == order.id)
            .order_by(OrderStatusHistory.created_at, OrderStatusHistory.id)
        )
    ).all()
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
