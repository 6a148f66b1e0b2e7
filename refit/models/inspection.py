"""ORM models of an inspection and its photo evidence (migration 0009). Written by the
service; the order's seller may read their own (RLS)."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import DateTime, FetchedValue, ForeignKey, Integer, Numeric, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from refit.db import Base
from refit.models.base import EnumText, UUIDPrimaryKey


class Outcome(StrEnum):
    AS_QUOTED = "as_quoted"  # the quoted price stands; the order waits in inspecting for payout
    REVISED_OFFER = "revised_offer"  # a lower price offered to the seller (offer_pending)
    UNBUYABLE = "unbuyable"  # the device goes home (returning)


class Inspection(UUIDPrimaryKey, Base):
    __tablename__ = "inspections"

    # The order's seller, copied by a trigger on insert (migration 0016), so the seller's RLS
    # policy compares a column instead of joining orders. Never set by the code.
    user_id: Mapped[uuid.UUID] = mapped_column(nullable=False, server_default=FetchedValue())

    # One per order (unique): the verdict is given once.
    order_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("orders.id", ondelete="CASCADE"), unique=True, nullable=False
    )
    operator_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("operators.id"), nullable=False)
    grade: Mapped[str] = mapped_column(Text, nullable=False)
    storage: Mapped[str | None] = mapped_column(Text)
    imei: Mapped[str | None] = mapped_column(Text)
    serial: Mapped[str | None] = mapped_column(Text)
    checklist: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    notes: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    # What the catalog pays for what was found, and an admin's price instead of it.
    catalog_price_usd: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    override_price_usd: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    override_reason: Mapped[str | None] = mapped_column(Text)
    override_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("operators.id"))
    # What we pay (the order's final_price_usd); None when the device goes home.
    final_price_usd: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    outcome: Mapped[Outcome] = mapped_column(EnumText(Outcome), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )


class EvidencePhoto(UUIDPrimaryKey, Base):
    __tablename__ = "evidence_photos"

    # The order's seller, copied by a trigger on insert (migration 0016), so the seller's RLS
    # policy compares a column instead of joining orders. Never set by the code.
    user_id: Mapped[uuid.UUID] = mapped_column(nullable=False, server_default=FetchedValue())

    order_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("orders.id", ondelete="CASCADE"), nullable=False
    )
    # In refit.storage: evidence/<order_id>/<photo_id>.<jpg|png|webp>.
    storage_key: Mapped[str] = mapped_column(Text, unique=True, nullable=False)
    content_type: Mapped[str] = mapped_column(Text, nullable=False)
    bytes: Mapped[int] = mapped_column(Integer, nullable=False)
    width: Mapped[int] = mapped_column(Integer, nullable=False)
    height: Mapped[int] = mapped_column(Integer, nullable=False)
    sha256: Mapped[str] = mapped_column(Text, nullable=False)
    uploaded_by: Mapped[uuid.UUID] = mapped_column(ForeignKey("operators.id"), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
