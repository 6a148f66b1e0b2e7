from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, DateTime, ForeignKey, Numeric, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from refit.db import Base
from refit.models.base import EnumText, Timestamps, UUIDPrimaryKey


class OrderStatus(StrEnum):
    PENDING = "pending"
    PROCESSING_SHIPMENT = "processing_shipment"
    AWAITING_SHIPMENT = "awaiting_shipment"
    SHIPPED = "shipped"
    RECEIVED = "received"
    INSPECTING = "inspecting"
    OFFER_PENDING = "offer_pending"
    RETURNING = "returning"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    # History brought from the browser app's storage (refit/orders/imported.py): shown to its
    # seller as it was (imported_status), never moved, shipped, inspected or paid.
    IMPORTED = "imported"


class Order(UUIDPrimaryKey, Timestamps, Base):
    """The plan's `orders` table, plus what the label job and revised offers need."""

    __tablename__ = "orders"

    # ORD-<year>-<000001>, allocated by the database function next_order_number().
    order_number: Mapped[str] = mapped_column(
        Text, unique=True, nullable=False, server_default=text("next_order_number()")
    )
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), nullable=False)
    # Only orders.service.transition() writes this column.
    status: Mapped[OrderStatus] = mapped_column(
        EnumText(OrderStatus), nullable=False, server_default="pending"
    )

    device_brand: Mapped[str] = mapped_column(Text, nullable=False)
    device_model: Mapped[str] = mapped_column(Text, nullable=False)
    device_condition: Mapped[str] = mapped_column(Text, nullable=False)
    device_details: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # Copied from the quote: storage variant and the catalog category (phone, tablet, laptop,
    # watch), which decides the parcel size of the label.
    device_storage: Mapped[str | None] = mapped_column(Text)
    device_category: Mapped[str | None] = mapped_column(Text)
    # The quote this order was made from; unique: one order per quote.
    quote_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("quotes.id", ondelete="RESTRICT"), unique=True
    )

    quoted_price_usd: Mapped[Decimal] = mapped_column(Numeric(10, 2), nullable=False)
    quoted_price_sol: Mapped[Decimal] = mapped_column(Numeric(10, 4), nullable=False)
    # quoted_price_sol in lamports (x 10^9), exactly: what the quote showed.
    quoted_price_lamports: Mapped[int | None] = mapped_column(BigInteger)
    final_price_usd: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    final_price_sol: Mapped[Decimal | None] = mapped_column(Numeric(10, 4))

    shipping_address_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("shipping_addresses.id", ondelete="SET NULL")
    )
    shipping_rate_id: Mapped[str | None] = mapped_column(Text)
    shipping_carrier: Mapped[str | None] = mapped_column(Text)
    shipping_service: Mapped[str | None] = mapped_column(Text)
    shipping_cost: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    tracking_number: Mapped[str | None] = mapped_column(Text)
    label_url: Mapped[str | None] = mapped_column(Text)
    # The carrier's transaction id, recorded before waiting on it: a retried label job looks it
    # up instead of buying a second label.
    label_transaction_id: Mapped[str | None] = mapped_column(Text)
    label_file_key: Mapped[str | None] = mapped_column(Text)
    label_error: Mapped[str | None] = mapped_column(Text)
    label_purchased_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

    escrow_pubkey: Mapped[str | None] = mapped_column(Text)
    payment_tx_signature: Mapped[str | None] = mapped_column(Text)

    offer_expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # The seller accepted the revised offer; the order stays offer_pending until it is paid.
    offer_accepted_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    shipped_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # Something a person must look at (a parcel returned to sender, a carrier failure, a
    # delivery elsewhere than the warehouse): why, and since when. Cleared by an operator.
    attention_reason: Mapped[str | None] = mapped_column(Text)
    attention_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # An imported order (status `imported`): the status its seller's browser showed, for
    # display only; nothing reads it to decide anything.
    imported_status: Mapped[OrderStatus | None] = mapped_column(EnumText(OrderStatus))
    # The order a seller's "continue" of this imported one made (one at most).
    continued_as_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("orders.id", ondelete="SET NULL"), unique=True
    )
    # When the order entered its status: the queue's "waiting since" and its keyset order.
    # Written with `status` by orders.service.transition.
    status_changed_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    # The operator working on it ("mine" in the queue), and since when: refit/backoffice/claims.py.
    claimed_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("operators.id", ondelete="SET NULL")
    )
    claimed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class OrderStatusHistory(UUIDPrimaryKey, Base):
    __tablename__ = "order_status_history"

    order_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("orders.id", ondelete="CASCADE"), nullable=False
    )
    from_status: Mapped[OrderStatus | None] = mapped_column(EnumText(OrderStatus))
    status: Mapped[OrderStatus] = mapped_column(EnumText(OrderStatus), nullable=False)
    # Who made the change: "user:<uuid>", "operator:<name>", "system:<job>".
    actor: Mapped[str] = mapped_column(Text, nullable=False, server_default="system")
    notes: Mapped[str | None] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONB)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.clock_timestamp(), nullable=False
    )
