"""Idempotency keys: the first response to a (principal, Idempotency-Key) pair, replayed on
retry. The principal is whoever asked: "user:<uuid>" or "operator:<name>"."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, Integer, Text, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from refit.db import Base
from refit.models.base import UUIDPrimaryKey


class IdempotencyKey(UUIDPrimaryKey, Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("principal", "key"),)

    principal: Mapped[str] = mapped_column(Text, nullable=False)
    key: Mapped[str] = mapped_column(Text, nullable=False)
    request_method: Mapped[str] = mapped_column(Text, nullable=False)
    request_path: Mapped[str] = mapped_column(Text, nullable=False)
    # sha256 of method, path and the canonical JSON of the validated body.
    request_hash: Mapped[str] = mapped_column(Text, nullable=False)
    # Written in the same transaction as the work: a key row without a response never commits.
    response_status: Mapped[int | None] = mapped_column(Integer)
    # The exact JSON text sent, so a replay is byte-for-byte the first response.
    response_body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
