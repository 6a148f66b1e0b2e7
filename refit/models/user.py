from __future__ import annotations

from sqlalchemy import Boolean, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from refit.db import Base
from refit.models.base import Timestamps, UUIDPrimaryKey


class User(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "users"

    wallet_address: Mapped[str] = mapped_column(Text, unique=True, nullable=False)
    # Unique case-insensitively: a unique index on lower(email) (no citext on core PostgreSQL).
    email: Mapped[str | None] = mapped_column(Text)
    email_verified: Mapped[bool] = mapped_column(Boolean, server_default=false(), nullable=False)
