"""ORM models of the shipping system tables (migrations 0005, 0007, 0010). Service role only,
but for `shipping_events`, which a seller may read for their own orders."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    Numeric,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from refit.db import Base
from refit.models.base import EnumText, Timestamps, UUIDPrimaryKey


class TrackingStatus(StrEnum):
    """A parcel's tracking state, as carriers (and our sandbox) report it."""

    UNKNOWN = "UNKNOWN"
    PRE_TRANSIT = "PRE_TRANSIT"
    TRANSIT = "TRANSIT"
    DELIVERED = "DELIVERED"
    RETURNED = "RETURNED"
    FAILURE = "FAILURE"


class PurchaseStatus(StrEnum):
    """One label purchase attempt, from before the carrier call to its refund."""

    STARTED = "started"  # written before the carrier call; no answer yet
    REJECTED = "rejected"  # the carrier refused, or never created it: nothing bought
    PENDING = "pending"  # the carrier's transaction exists, still QUEUED/WAITING
    SUCCEEDED = "succeeded"
    ERROR = "error"  # the carrier's transaction ended in ERROR: nothing bought
    REFUND_PENDING = "refund_pending"
    REFUNDED = "refunded"
    REFUND_REJECTED = "refund_rejected"


# Attempts whose outcome is not settled yet: a new purchase must wait for them.
IN_FLIGHT = (PurchaseStatus.STARTED, PurchaseStatus.PENDING)


class Leg(StrEnum):
    """Which of an order's parcels: the seller's to the warehouse, or the device's way home."""

    INBOUND = "inbound"
    RETURN = "return"


class ReturnStatus(StrEnum):
    """The label home of an order in returning (one row per order)."""

    STARTED = "started"  # a purchase call made (or about to be) and not answered yet
    PENDING = "pending"  # the carrier's transaction exists, still QUEUED/WAITING
    PURCHASED = "purchased"  # bought and stored: the parcel can leave
    FAILED = "failed"  # nothing bought and nothing in flight; `error` says why
    DELIVERED = "delivered"  # the carrier delivered it to the seller


class RateQuote(UUIDPrimaryKey, Base):
    __tablename__ = "shipping_rate_quotes"

    order_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("orders.id", ondelete="CASCADE"), nullable=False
    )
    rate_id: Mapped[str] = mapped_column(Text, nullable=False)
    # Which implementation quoted it ("shippo", "sandbox"): a rate is only buyable there.
    carrier_name: Mapped[str] = mapped_column(Text, nullable=False)
    shipment_id: Mapped[str] = mapped_column(Text, nullable=False)
    carrier: Mapped[str] = mapped_column(Text, nullable=False)
    service: Mapped[str] = mapped_column(Text, nullable=False)
    service_token: Mapped[str | None] = mapped_column(Text)
    amount: Mapped[Decimal] = mapped_column(Numeric(10, 2), nullable=False)
    currency: Mapped[str] = mapped_column(Text, nullable=False)
    estimated_days: Mapped[int | None] = mapped_column(Integer)
    address_fingerprint: Mapped[str] = mapped_column(Text, nullable=False)
    quoted_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class LabelPurchase(UUIDPrimaryKey, Timestamps, Base):
    """One attempt to buy a label, written before the carrier is called."""

    __tablename__ = "shipping_label_purchases"

    order_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("orders.id", ondelete="CASCADE"), nullable=False
    )
    carrier_name: Mapped[str] = mapped_column(Text, nullable=False)
    rate_id: Mapped[str] = mapped_column(Text, nullable=False)
    job_id: Mapped[int | None] = mapped_column(BigInteger)
    attempt: Mapped[int | None] = mapped_column(Integer)
    transaction_id: Mapped[str | None] = mapped_column(Text)
    status: Mapped[PurchaseStatus] = mapped_column(
        EnumText(PurchaseStatus), nullable=False, server_default="started"
    )
    messages: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    label_url: Mapped[str | None] = mapped_column(Text)
    refund_id: Mapped[str | None] = mapped_column(Text)
    refund_status: Mapped[str | None] = mapped_column(Text)


class ReturnShipment(UUIDPrimaryKey, Timestamps, Base):
    """The device's label home, bought exactly once (refit/shipping/returns.py): the row is
    written before the carrier is called, the carrier's transaction id before it is waited
    on."""

    __tablename__ = "shipping_returns"

    order_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("orders.id", ondelete="CASCADE"), nullable=False, unique=True
    )
    status: Mapped[ReturnStatus] = mapped_column(
        EnumText(ReturnStatus), nullable=False, server_default="started"
    )
    # Which implementation sold it ("shippo", "sandbox"), and what.
    carrier_name: Mapped[str | None] = mapped_column(Text)
    rate_id: Mapped[str | None] = mapped_column(Text)
    carrier: Mapped[str | None] = mapped_column(Text)
    service: Mapped[str | None] = mapped_column(Text)
    cost: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    insured_usd: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    signature: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    transaction_id: Mapped[str | None] = mapped_column(Text)
    tracking_number: Mapped[str | None] = mapped_column(Text)
    label_file_key: Mapped[str | None] = mapped_column(Text)
    # The carrier's signed label URL, for operators.
    label_url: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    # When the latest purchase call was begun (database clock): a reply lost then is looked
    # for around this moment.
    attempted_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    purchased_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # The parcel left the warehouse with the carrier: when, and who ("operator:<id>"), as an
    # operator marked it (shipping/label_moves.py). Not a status: the carrier's scans follow.
    handed_over_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    handed_over_by: Mapped[str | None] = mapped_column(Text)


class ShippingEvent(UUIDPrimaryKey, Base):
    """One carrier tracking event of one of an order's parcels, normalised when written."""

    __tablename__ = "shipping_events"
    # One row per parcel, status and moment: a webhook delivered twice, or the same event seen
    # in a webhook body and in the carrier's track, is recorded once.
    __table_args__ = (
        UniqueConstraint(
            "order_id",
            "leg",
            "status",
            "occurred_at",
            name="uq_shipping_events_order_leg_status_occurred",
            postgresql_nulls_not_distinct=True,
        ),
    )

    order_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("orders.id", ondelete="CASCADE"), nullable=False
    )
    leg: Mapped[Leg] = mapped_column(EnumText(Leg), nullable=False, server_default="inbound")
    # Where it came from: "track" (the carrier's track object), a webhook event name, ...
    event_type: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[TrackingStatus] = mapped_column(
        EnumText(TrackingStatus), nullable=False, server_default="UNKNOWN"
    )
    substatus: Mapped[str | None] = mapped_column(Text)
    # The carrier's own words for the status, as sent.
    carrier_status: Mapped[str | None] = mapped_column(Text)
    location: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    # The carrier's delivery estimate as of this event.
    eta: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    raw_data: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    occurred_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )


class WebhookInbox(UUIDPrimaryKey, Base):
    """A verified webhook body, kept once per event (`provider`, `dedupe_key`) before it is
    handled; a body that could not be parsed, or whose handling failed
    REFIT_WEBHOOK_MAX_ATTEMPTS times, is kept with its `error` for an operator."""

    __tablename__ = "webhook_inbox"
    __table_args__ = (
        UniqueConstraint("provider", "dedupe_key", name="uq_webhook_inbox_provider_dedupe_key"),
    )

    provider: Mapped[str] = mapped_column(Text, nullable=False)
    event: Mapped[str | None] = mapped_column(Text)
    dedupe_key: Mapped[str] = mapped_column(Text, nullable=False)
    test: Mapped[bool | None] = mapped_column(Boolean)
    body: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # The bytes as received (decoded leniently) when they were not a JSON object.
    raw_body: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    order_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("orders.id", ondelete="SET NULL"))
    # What handling it did ("moved to received", "no matching order", ...).
    outcome: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    processed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # Handlings that raised (migration 0024), the last one's error and time; a replay from
    # the dashboard sets the count back to 0.
    attempts: Mapped[int] = mapped_column(Integer, server_default="0", nullable=False)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_attempt_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class SandboxObject(Base):
    __tablename__ = "sandbox_carrier_objects"

    object_id: Mapped[str] = mapped_column(Text, primary_key=True)
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
