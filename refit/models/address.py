from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Text, false
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from refit.db import Base
from refit.models.base import Timestamps, UUIDPrimaryKey


class ShippingAddress(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "shipping_addresses"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    name: Mapped[str] = mapped_column(Text, nullable=False)
    street1: Mapped[str] = mapped_column(Text, nullable=False)
    street2: Mapped[str | None] = mapped_column(Text)
    city: Mapped[str] = mapped_column(Text, nullable=False)
    state: Mapped[str] = mapped_column(Text, nullable=False)
    zip: Mapped[str] = mapped_column(Text, nullable=False)
    country: Mapped[str] = mapped_column(Text, server_default="US", nullable=False)
    phone: Mapped[str | None] = mapped_column(Text)
    # At most one default per user: a partial unique index in the migration.
    is_default: Mapped[bool] = mapped_column(Boolean, server_default=false(), nullable=False)
    is_validated: Mapped[bool] = mapped_column(Boolean, server_default=false(), nullable=False)
    validation_data: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
