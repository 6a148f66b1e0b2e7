"""Quotes: a server-priced offer for one device, USD locked until expires_at."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, DateTime, ForeignKey, Numeric, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from refit.db import Base
from refit.models.base import UUIDPrimaryKey


class Quote(UUIDPrimaryKey, Base):
    __tablename__ = "quotes"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    catalog_variant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("catalog_variants.id", ondelete="SET NULL")
    )
    # Copied from the catalog at quote time: a later catalog change never alters a quote.
    device_brand: Mapped[str] = mapped_column(Text, nullable=False)
    device_model: Mapped[str] = mapped_column(Text, nullable=False)
    device_storage: Mapped[str] = mapped_column(Text, nullable=False)
    device_category: Mapped[str] = mapped_column(Text, nullable=False)
    device_condition: Mapped[str] = mapped_column(Text, nullable=False)
    device_details: Mapped[dict[str, Any] | None] = mapped_column(JSONB)

    base_price_usd: Mapped[Decimal] = mapped_column(Numeric(10, 2), nullable=False)
    price_factor: Mapped[Decimal] = mapped_column(Numeric(5, 4), nullable=False)
    price_usd: Mapped[Decimal] = mapped_column(Numeric(10, 2), nullable=False)
    price_sol: Mapped[Decimal] = mapped_column(Numeric(10, 4), nullable=False)
    price_lamports: Mapped[int] = mapped_column(BigInteger, nullable=False)
    sol_usd_rate: Mapped[Decimal] = mapped_column(Numeric(20, 8), nullable=False)
    rate_source: Mapped[str] = mapped_column(Text, nullable=False)
    rate_timestamp: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
