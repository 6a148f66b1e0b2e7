"""POST /api/quotes in and out. The request carries no price: unknown fields are refused."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from refit.models.catalog import DeviceCategory

DetailValue = Annotated[str, Field(max_length=200)] | int | bool | None


class QuoteCreate(BaseModel):
    # extra="forbid": a client that adds "price_usd" (or any field we do not know) gets a 422,
    # never a quote that looks like it honoured its number.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    device_brand: Annotated[str, Field(min_length=1, max_length=120)]
    device_model: Annotated[str, Field(min_length=1, max_length=120)]
    storage: Annotated[str, Field(min_length=1, max_length=40)] | None = None
    device_condition: Annotated[str, Field(min_length=1, max_length=32)]
    # What the seller tells us besides the catalog entry (colour, carrier lock, IMEI...).
    # Informational: it never changes the price.
    device_details: dict[Annotated[str, Field(min_length=1, max_length=40)], DetailValue] | None = (
        None
    )

    @field_validator("device_details")
    @classmethod
    def _small(cls, details: dict[str, object] | None) -> dict[str, object] | None:
        if details is not None and len(details) > 20:
            raise ValueError("at most 20 details")
        return details


class QuoteRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    quote_id: uuid.UUID = Field(validation_alias="id")
    device_brand: str
    device_model: str
    storage: str = Field(validation_alias="device_storage")
    device_category: DeviceCategory
    device_condition: str
    device_details: dict[str, object] | None
    # Guaranteed until expires_at.
    price_usd: Decimal
    # Computed from sol_usd_rate at quote time (rounded down to 0.0001 SOL): informational.
    price_sol: Decimal
    price_lamports: int
    sol_usd_rate: Decimal
    rate_source: str
    rate_timestamp: dt.datetime
    expires_at: dt.datetime
    created_at: dt.datetime
