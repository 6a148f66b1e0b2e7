"""Flags in and out of the API (and the CLI, which builds the same FlagChange)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from refit.models.flag import FlagMode

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"  # as ck_feature_flags_name
MAX_WALLETS = 10_000


class VariantSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", from_attributes=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$", examples=["treatment"])
    weight: int = Field(default=1, ge=1, le=10_000)


class FlagChange(BaseModel):
    """PUT /api/admin/flags/{name}: `mode` is required; a field left out keeps its value (a new
    flag starts at 0%, no wallets, no variants)."""

    model_config = ConfigDict(extra="forbid")

    mode: FlagMode
    percent: int | None = Field(default=None, ge=0, le=100)
    wallets: list[str] | None = Field(default=None, max_length=MAX_WALLETS)
    variants: list[VariantSpec] | None = Field(default=None, max_length=20)
    description: str | None = Field(default=None, max_length=500)

    @field_validator("wallets")
    @classmethod
    def _wallets(cls, wallets: list[str] | None) -> list[str] | None:
        if wallets is None:
            return None
        cleaned = [w.strip() for w in wallets]
        if any(not w or len(w) > 64 for w in cleaned):
            raise ValueError("wallet addresses are 1-64 characters")
        return sorted(set(cleaned))

    @field_validator("variants")
    @classmethod
    def _variants(cls, variants: list[VariantSpec] | None) -> list[VariantSpec] | None:
        if variants is not None and len({v.name for v in variants}) != len(variants):
            raise ValueError("variant names must be unique")
        return variants


class FlagRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    mode: FlagMode
    percent: int
    wallets: list[str]
    variants: list[VariantSpec]
    description: str
    updated_by: str
    updated_at: dt.datetime
    # Exposures served per variant, summed over every process (a few seconds behind).
    exposures: dict[str, int] = Field(default_factory=dict)


class FlagAuditRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    actor: str
    created_at: dt.datetime
    before: dict[str, Any] | None
    after: dict[str, Any]


class FlagReadWithAudit(FlagRead):
    audit: list[FlagAuditRead]


class SellerFlags(BaseModel):
    """GET /api/flags: every flag, on or off for the caller, and the caller's variant of each
    flag that is on for them and has variants."""

    flags: dict[str, bool] = Field(examples=[{"new-checkout": True, "sol-price-banner": False}])
    variants: dict[str, str] = Field(examples=[{"new-checkout": "treatment"}])
