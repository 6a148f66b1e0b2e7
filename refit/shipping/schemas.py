"""Shipping requests and responses."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, StringConstraints

from refit.carriers.interface import TrackingStatus
from refit.models import OrderStatus
from refit.models.shipping import Leg
from refit.orders.schemas import OrderDetail

Money = Annotated[Decimal, PlainSerializer(lambda d: f"{d:.2f}", return_type=str)]


class RatesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order_id: uuid.UUID


class RateRead(BaseModel):
    rate_id: str
    carrier: str
    service: str
    amount: Money
    currency: str
    estimated_days: int | None


class RatesResponse(BaseModel):
    rates: list[RateRead]


class PurchaseLabelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order_id: uuid.UUID
    rate_id: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class LabelPurchaseAccepted(BaseModel):
    """docs/api.md: 202 `{order}` in processing_shipment; the label is bought by a job."""

    order: OrderDetail


class OrderJobQueued(BaseModel):
    """An operator's shipping action: the order as it now is, and the job that does the work."""

    order_id: uuid.UUID
    status: str
    job_id: int | None = Field(
        description="The job queued for the order (label, label home, refund), or null if none "
        "is waiting: one was already running, or none follows"
    )


class SandboxTrackingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: TrackingStatus
    # Which parcel: the seller's to the warehouse, or the device's way home.
    leg: Leg = Leg.INBOUND


class TrackingEventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    # inbound: the seller's parcel to the warehouse; return: the device's way home.
    leg: Leg
    event_type: str
    # Normalised: Shippo's UNKNOWN, PRE_TRANSIT, TRANSIT, DELIVERED, RETURNED, FAILURE.
    status: TrackingStatus
    substatus: str | None
    carrier_status: str | None
    location: str | None
    description: str | None
    occurred_at: dt.datetime | None


class TrackingRead(BaseModel):
    order_status: OrderStatus
    carrier: str | None
    tracking_number: str | None
    # The carrier's latest status; UNKNOWN before the first scan.
    status: TrackingStatus
    eta: dt.datetime | None
    events: list[TrackingEventRead]
