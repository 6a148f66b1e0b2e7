"""The operators' view of orders, composed across the domains: the list's rows and the
whole story of one order. Money as Decimal, sent as strings."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from refit.inspection.schemas import AddressRead, EvidenceRead, InspectionRead
from refit.models.order import OrderStatus
from refit.orders.schemas import AdminOrderRead
from refit.payouts.schemas import PayoutRead
from refit.shipping.schemas import TrackingRead


class AdminOrderSummary(BaseModel):
    """One row of the operators' order list."""

    id: uuid.UUID
    order_number: str
    status: OrderStatus
    device_brand: str
    device_model: str
    device_storage: str | None
    device_condition: str
    quoted_price_usd: Decimal
    final_price_usd: Decimal | None
    tracking_number: str | None
    attention_reason: str | None
    user_id: uuid.UUID
    wallet_address: str
    email: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


class AdminOrderPage(BaseModel):
    items: list[AdminOrderSummary]
    next_cursor: str | None


class SellerRead(BaseModel):
    id: uuid.UUID
    wallet_address: str
    email: str | None
    email_verified: bool


class HistoryEntry(BaseModel):
    """A move with its full actor ("operator:<id>", "user:<id>", "system:<job>")."""

    model_config = ConfigDict(from_attributes=True)

    from_status: OrderStatus | None
    status: OrderStatus
    actor: str
    notes: str | None
    metadata: dict[str, Any] | None = Field(validation_alias="metadata_")
    created_at: dt.datetime


class AdminOrderDetail(BaseModel):
    """The whole story of one order."""

    order: AdminOrderRead
    seller: SellerRead
    address: AddressRead | None
    tracking: TrackingRead
    history: list[HistoryEntry]
    inspection: InspectionRead | None
    evidence: list[EvidenceRead]
    # Once an admin asked to pay the order.
    payout: PayoutRead | None = None
