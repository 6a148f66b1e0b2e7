"""ORM models of the shipping system tables (migration 0005). Service role only."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, DateTime, ForeignKey, Integer, Numeric, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from refit.db import Base
from refit.models.base import EnumText, Timestamps, UUIDPrimaryKey
from refit.shipping.carrier import TrackingStatus


class PurchaseStatus(StrEnum):
    """One label purchase attempt, from before the carrier call to its refund."""

    STARTED = "started"  # written before the carrier call; no answer yet
    REJECTED = "rejected"  # the carrier refused, or never created it: nothing bought
    PENDING = "pending"  # the carrier's transaction exists, still QUEUED/WAITING
    SUCCEEDED = "succeeded"
    ERROR = "error"  # the carrier's transaction ended in ERROR: nothing bought
    REFUND_PENDING = "refund_pending"
    REFUNDED = "refunded"
    REFUND_REJECTED = "refund_rejected"


# Attempts whose outcome is not settled yet: a new purchase must wait for them.
IN_FLIGHT = (PurchaseStatus.STARTED, PurchaseStatus.PENDING)


class RateQuote(UUIDPrimaryKey, Base):
    __tablename__ = "shipping_rate_quotes"

    order_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("orders.id", ondelete="CASCADE"), nullable=False
    )
    rate_id: Mapped[str] = mapped_column(Text, nullable=False)
    # Which implementation quoted it ("shippo", "sandbox"): a rate is only buyable there.
    carrier_name: Mapped[str] = mapped_column(Text, nullable=False)
    shipment_id: Mapped[str] = mapped_column(Text, nullable=False)
    carrier: Mapped[str] = mapped_column(Text, nullable=False)
    service: Mapped[str] = mapped_column(Text, nullable=False)
    service_token: Mapped[str | None] = mapped_column(Text)
    amount: Mapped[Decimal] = mapped_column(Numeric(10, 2), nullable=False)
    currency: Mapped[str] = mapped_column(Text, nullable=False)
    estimated_days: Mapped[int | None] = mapped_column(Integer)
    address_fingerprint: Mapped[str] = mapped_column(Text, nullable=False)
    quoted_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class LabelPurchase(UUIDPrimaryKey, Timestamps, Base):
    """One attempt to buy a label, written before the carrier is called."""

    __tablename__ = "shipping_label_purchases"

    order_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("orders.id", ondelete="CASCADE"), nullable=False
    )
    carrier_name: Mapped[str] = mapped_column(Text, nullable=False)
    rate_id: Mapped[str] = mapped_column(Text, nullable=False)
    job_id: Mapped[int | None] = mapped_column(BigInteger)
    attempt: Mapped[int | None] = mapped_column(Integer)
    transaction_id: Mapped[str | None] = mapped_column(Text)
    status: Mapped[PurchaseStatus] = mapped_column(
        EnumText(PurchaseStatus), nullable=False, server_default="started"
    )
    messages: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    label_url: Mapped[str | None] = mapped_column(Text)
    refund_id: Mapped[str | None] = mapped_column(Text)
    refund_status: Mapped[str | None] = mapped_column(Text)


class ShippingEvent(UUIDPrimaryKey, Base):
    """One carrier tracking event of an order's parcel, normalised when written."""

    __tablename__ = "shipping_events"

    order_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("orders.id", ondelete="CASCADE"), nullable=False
    )
    # Where it came from: "track" (the carrier's track object), a webhook event name, ...
    event_type: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[TrackingStatus] = mapped_column(
        EnumText(TrackingStatus), nullable=False, server_default="UNKNOWN"
    )
    substatus: Mapped[str | None] = mapped_column(Text)
    # The carrier's own words for the status, as sent.
    carrier_status: Mapped[str | None] = mapped_column(Text)
    location: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    # The carrier's delivery estimate as of this event.
    eta: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    raw_data: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    occurred_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )


class SandboxObject(Base):
    __tablename__ = "sandbox_carrier_objects"

    object_id: Mapped[str] = mapped_column(Text, primary_key=True)
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
