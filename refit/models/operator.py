"""Operator accounts: the people behind /api/admin, never sellers."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from sqlalchemy import DateTime, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from refit.db import Base
from refit.models.base import EnumText, Timestamps, UUIDPrimaryKey


class OperatorRole(StrEnum):
    INSPECTOR = "inspector"
    ADMIN = "admin"


class AuditOutcome(StrEnum):
    DONE = "done"
    REFUSED = "refused"


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
    # Who made this operator: "operator:<id>" (an admin, API or dashboard) or "cli:<login>"
    # (someone with database access). None: made before this was recorded (migration 0022).
    created_by: Mapped[str | None] = mapped_column(Text)
    # None on an admin made by another admin until a second, older admin approves it
    # (refit/admin/four_eyes.py): until then it cannot sign in and its tokens are refused.
    # Every other operator is approved as it is made (approved_by is then its creator).
    approved_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    approved_by: Mapped[str | None] = mapped_column(Text)

    @property
    def awaiting_approval(self) -> bool:
        return self.approved_at is None


class OperatorAudit(UUIDPrimaryKey, Base):
    """One thing done to an operator account, or refused by four-eyes: who, what, to whom,
    when. Written by refit/admin/audit.py only; never updated."""

    __tablename__ = "operator_audit"

    at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    # "operator:<id>" or "cli:<login>".
    actor: Mapped[str] = mapped_column(Text, nullable=False)
    # Dotted: "operator.create", "operator.approve", "operator.disable", "payout.approve"...
    action: Mapped[str] = mapped_column(Text, nullable=False)
    # What it was done to: "operator:<username>", "payout:<id>".
    subject: Mapped[str] = mapped_column(Text, nullable=False)
    outcome: Mapped[AuditOutcome] = mapped_column(EnumText(AuditOutcome), nullable=False)
    detail: Mapped[dict[str, Any]] = mapped_column(
        JSONB, server_default=text("'{}'"), nullable=False
    )
