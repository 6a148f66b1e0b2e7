"""ORM models of the shipping system tables (migration 0005). Service role only."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, DateTime, ForeignKey, Integer, Numeric, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from refit.db import Base
from refit.models.base import Timestamps, UUIDPrimaryKey


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
    # started | rejected | pending | succeeded | error | refund_pending | refunded |
    # refund_rejected
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default="started")
    messages: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    label_url: Mapped[str | None] = mapped_column(Text)
    refund_id: Mapped[str | None] = mapped_column(Text)
    refund_status: Mapped[str | None] = mapped_column(Text)


class SandboxObject(Base):
    __tablename__ = "sandbox_carrier_objects"

    object_id: Mapped[str] = mapped_column(Text, primary_key=True)
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
