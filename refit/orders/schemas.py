"""Orders in and out. Money is Decimal, sent as strings ("412.50", "2.7500"); lamports are ints."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from refit.models.order import OrderStatus


class OrderCreate(BaseModel):
    # No prices, no device: both come from the quote. Unknown fields are a 422.
    model_config = ConfigDict(extra="forbid")

    quote_id: uuid.UUID
    shipping_address_id: uuid.UUID


class OrderContinue(BaseModel):
    """Going on with an imported order: a new quote for the same device and condition, and a
    new order from it. The address: this one, else the imported order's own."""

    model_config = ConfigDict(extra="forbid")

    shipping_address_id: uuid.UUID | None = None


class OrderCancel(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    reason: Annotated[str, Field(max_length=500)] | None = None


class StatusChange(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    from_status: OrderStatus | None
    status: OrderStatus
    # "user", "operator" or "system": who made the change (operators' names stay internal).
    actor: str
    notes: str | None
    created_at: dt.datetime

    @field_validator("actor", mode="before")
    @classmethod
    def _kind(cls, actor: str) -> str:
        return actor.split(":", 1)[0]


class OrderRead(BaseModel):
    """Every column of `orders` a seller may see."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    order_number: str
    user_id: uuid.UUID
    status: OrderStatus
    quote_id: uuid.UUID | None
    device_brand: str
    device_model: str
    device_storage: str | None
    device_category: str | None
    device_condition: str
    device_details: dict[str, Any] | None
    quoted_price_usd: Decimal
    quoted_price_sol: Decimal
    quoted_price_lamports: int | None
    final_price_usd: Decimal | None
    final_price_sol: Decimal | None
    shipping_address_id: uuid.UUID | None
    shipping_rate_id: str | None
    shipping_carrier: str | None
    shipping_service: str | None
    shipping_cost: Decimal | None
    tracking_number: str | None
    label_url: str | None
    label_error: str | None
    label_purchased_at: dt.datetime | None
    escrow_pubkey: str | None
    payment_tx_signature: str | None
    offer_expires_at: dt.datetime | None
    offer_accepted_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime
    shipped_at: dt.datetime | None
    received_at: dt.datetime | None
    completed_at: dt.datetime | None
    cancelled_at: dt.datetime | None
    # Status `imported` (history from the browser app's storage): the status the browser
    # showed, for display only. Such an order never moves; `continued_as_id` is the order
    # its seller made to go on with it (POST /api/orders/{id}/continue).
    imported_status: OrderStatus | None = None
    continued_as_id: uuid.UUID | None = None


class AdminOrderRead(OrderRead):
    """The order's columns as operators see them: the seller's, and what is internal."""

    label_transaction_id: str | None
    label_file_key: str | None
    attention_reason: str | None
    attention_at: dt.datetime | None


class InspectionView(BaseModel):
    """The inspection as the order's owner sees it (docs/api.md): what was found, the inspector's
    notes and the photos, as signed URLs valid for a few minutes."""

    grade: str
    storage: str | None
    notes: str
    checklist: dict[str, Any]
    photos: list[str]
    inspected_at: dt.datetime


class PayoutView(BaseModel):
    """The seller's payment as the order shows it: USD is what was promised, SOL and
    lamports what the rate at payout made of it; the signature once a transaction is signed,
    the explorer's link once it was sent."""

    status: str
    amount_usd: Decimal
    amount_sol: Decimal | None
    lamports: int | None
    signature: str | None
    explorer_url: str | None


class OrderDetail(OrderRead):
    status_history: list[StatusChange]
    # Once the device was inspected.
    inspection: InspectionView | None = None
    # Once an operator asked for the payment.
    payout: PayoutView | None = None


class OrderPage(BaseModel):
    items: list[OrderRead]
    next_cursor: str | None
