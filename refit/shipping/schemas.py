"""Shipping requests and responses."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, StringConstraints

from refit.orders.schemas import OrderDetail
from refit.shipping.carrier import TrackingStatus

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
    """API.md: 202 `{order}` in processing_shipment; the label is bought by a job."""

    order: OrderDetail


class RetryLabelResponse(BaseModel):
    order_id: uuid.UUID
    status: str
    job_id: int | None = Field(description="The queued job, or null if one was already waiting")


class SandboxTrackingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: TrackingStatus
