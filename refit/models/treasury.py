"""The treasury's balance as the worker read it (migration 0023; refit/payouts/
treasury_readings.py writes it). Pages and the metrics read the newest row, never the RPC.
Service role only."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, DateTime, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from refit.db import Base
from refit.models.base import UUIDPrimaryKey


class TreasuryReading(UUIDPrimaryKey, Base):
    """One balance read: when, of which key, how much, at which slot the chain answered."""

    __tablename__ = "treasury_readings"

    at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False, index=True
    )
    pubkey: Mapped[str] = mapped_column(Text, nullable=False)
    lamports: Mapped[int] = mapped_column(BigInteger, nullable=False)
    slot: Mapped[int] = mapped_column(BigInteger, nullable=False)
