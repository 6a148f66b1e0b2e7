"""ORM models of a payout (migration 0011) and its audit trail (0021). Service role only.
Their one writer is refit/payouts/states.py."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    FetchedValue,
    ForeignKey,
    Integer,
    LargeBinary,
    Numeric,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from refit.db import Base
from refit.models.base import EnumText, Timestamps, UUIDPrimaryKey


class PayoutStatus(StrEnum):
    AWAITING_APPROVAL = "awaiting_approval"  # over the per-payout cap: a second admin approves
    PENDING = "pending"  # asked for; nothing signed yet
    SIGNED = "signed"  # the transaction is stored; it may or may not have been broadcast
    SENT = "sent"  # the RPC accepted it (or had it already)
    FINALIZED = "finalized"  # on chain, finalized: the order is completed
    FAILED = "failed"  # landed with an error (no transfer): for an operator
    HELD = "held"  # not to be signed until an operator decides (`hold_reason` says why)
    CANCELLED = "cancelled"  # given up by an operator; paying the order again re-opens it


class HoldReason(StrEnum):
    """Why a payout is held. Each has its one way out (refit/payouts/recovery.py)."""

    ALREADY_ON_CHAIN = "already_on_chain"  # a transfer with its reference found: resolve
    SANCTIONS = "sanctions"  # the recipient is on the list: release (four-eyes)
    SANCTIONS_LIST_STALE = "sanctions_list_stale"  # production, list too old: release


# Still to drive to the chain; the sweep looks for these.
OPEN = frozenset({PayoutStatus.PENDING, PayoutStatus.SIGNED, PayoutStatus.SENT})


class Payout(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "payouts"

    # The order's seller, copied by a trigger on insert (migration 0016), so the seller's RLS
    # policy compares a column instead of joining orders. Never set by the code.
    user_id: Mapped[uuid.UUID] = mapped_column(nullable=False, server_default=FetchedValue())

    order_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("orders.id", ondelete="RESTRICT"), unique=True, nullable=False
    )
    status: Mapped[PayoutStatus] = mapped_column(
        EnumText(PayoutStatus), nullable=False, server_default="pending"
    )
    amount_usd: Mapped[Decimal] = mapped_column(Numeric(10, 2), nullable=False)
    amount_sol: Mapped[Decimal | None] = mapped_column(Numeric(10, 4))
    sol_usd_rate: Mapped[Decimal | None] = mapped_column(Numeric(20, 8))
    rate_source: Mapped[str | None] = mapped_column(Text)
    rate_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    lamports: Mapped[int | None] = mapped_column(BigInteger)
    recipient: Mapped[str] = mapped_column(Text, nullable=False)
    treasury: Mapped[str] = mapped_column(Text, nullable=False)
    reference: Mapped[str] = mapped_column(Text, unique=True, nullable=False)
    signed_tx: Mapped[bytes | None] = mapped_column(LargeBinary)
    signature: Mapped[str | None] = mapped_column(Text)
    last_valid_block_height: Mapped[int | None] = mapped_column(BigInteger)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    requested_by: Mapped[str] = mapped_column(Text, nullable=False)
    # When it was last asked for: a cancelled payout paid again is asked for anew, and
    # four-eyes measures "the approver existed before the request" from here.
    requested_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    error: Mapped[str | None] = mapped_column(Text)
    # Set exactly while `held` (a check constraint says so).
    hold_reason: Mapped[HoldReason | None] = mapped_column(EnumText(HoldReason))
    approved_by: Mapped[str | None] = mapped_column(Text)
    # When its first transaction was signed: the day it counts against the daily cap.
    signed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    finalized_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class PayoutEvent(UUIDPrimaryKey, Base):
    """One write of a payout's status or error: who, why, and the chain's evidence."""

    __tablename__ = "payout_events"

    payout_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("payouts.id", ondelete="RESTRICT"), index=True, nullable=False
    )
    from_status: Mapped[PayoutStatus | None] = mapped_column(EnumText(PayoutStatus))
    to_status: Mapped[PayoutStatus] = mapped_column(EnumText(PayoutStatus), nullable=False)
    actor: Mapped[str] = mapped_column(Text, nullable=False)
    reason: Mapped[str | None] = mapped_column(Text)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default="{}")
    at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
