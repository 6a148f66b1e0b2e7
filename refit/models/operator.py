"""Operator accounts: the people behind /api/admin, never sellers."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import DateTime, Text
from sqlalchemy.orm import Mapped, mapped_column

from refit.db import Base
from refit.models.base import EnumText, Timestamps, UUIDPrimaryKey


class OperatorRole(StrEnum):
    INSPECTOR = "inspector"
    ADMIN = "admin"


class Operator(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "operators"

    # Lower-cased; the charset and length are checked by the database (ck_operators_username).
    username: Mapped[str] = mapped_column(Text, unique=True, nullable=False)
    # argon2id, in its own encoded form (parameters and salt included).
    password_hash: Mapped[str] = mapped_column(Text, nullable=False)
    role: Mapped[OperatorRole] = mapped_column(EnumText(OperatorRole), nullable=False)
    # Set: no sign-in, and every token already issued is refused at its next request.
    disabled_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_login_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # The dashboard's sessions issued at or before this are refused (its sign-out).
    dashboard_signed_out_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
