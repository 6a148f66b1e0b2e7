"""Feature flags, their audit trail and exposure counts (migration 0014)."""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, DateTime, ForeignKey, SmallInteger, Text, func, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from refit.db import Base
from refit.models.base import EnumText, Timestamps, UUIDPrimaryKey


class FlagMode(StrEnum):
    OFF = "off"
    ON = "on"
    WALLETS = "wallets"  # on for the listed wallets only
    PERCENT = "percent"  # on for `percent` % of wallets, by a stable hash


class Flag(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "feature_flags"

    name: Mapped[str] = mapped_column(Text, unique=True, nullable=False)
    mode: Mapped[FlagMode] = mapped_column(EnumText(FlagMode), nullable=False)
    # Kept while the flag is in another mode, so turning it back to `percent` resumes there.
    percent: Mapped[int] = mapped_column(SmallInteger, server_default=text("0"), nullable=False)
    wallets: Mapped[list[str]] = mapped_column(
        ARRAY(Text), server_default=text("'{}'"), nullable=False
    )
    # [{"name": "control", "weight": 1}, ...]; empty: a plain on/off flag.
    variants: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, server_default=text("'[]'"), nullable=False
    )
    description: Mapped[str] = mapped_column(Text, server_default=text("''"), nullable=False)
    updated_by: Mapped[str] = mapped_column(Text, nullable=False)


class FlagAudit(UUIDPrimaryKey, Base):
    """One change of a flag: who, when, from what to what. Never updated."""

    __tablename__ = "feature_flag_audit"

    flag_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("feature_flags.id"), nullable=False)
    actor: Mapped[str] = mapped_column(Text, nullable=False)
    # None: this change created the flag.
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    after: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )


class FlagExposure(Base):
    """How many times a variant of a flag was served, summed over every process."""

    __tablename__ = "feature_flag_exposures"

    flag_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("feature_flags.id"), primary_key=True)
    variant: Mapped[str] = mapped_column(Text, primary_key=True)
    exposures: Mapped[int] = mapped_column(BigInteger, server_default=text("0"), nullable=False)
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
