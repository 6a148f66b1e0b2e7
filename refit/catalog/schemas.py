"""The catalog file format (what `refit catalog load` reads) and GET /api/catalog's answer."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from refit.models.catalog import DeviceCategory

# numeric(10, 2): at most 99,999,999.99, whole cents.
UsdAmount = Annotated[Decimal, Field(ge=0, le=Decimal("99999999.99"), decimal_places=2)]
Text = Annotated[str, Field(min_length=1, max_length=120)]
_STORAGE = re.compile(r"(\d+)(GB|TB)")


def storage_sort_key(storage: str) -> tuple[int, str]:
    """64GB < 512GB < 1TB; anything else after, alphabetically."""
    found = _STORAGE.fullmatch(storage)
    if not found:
        return (10**9, storage)
    size = int(found.group(1)) * (1024 if found.group(2) == "TB" else 1)
    return (size, storage)


class GradeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
    name: Text
    description: Annotated[str, Field(min_length=1, max_length=1000)]
    price_factor: Annotated[Decimal, Field(ge=0, le=1, decimal_places=4)]
    sort_order: int = 0


class ModelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    brand: Text
    model: Text
    category: DeviceCategory
    release_year: Annotated[int, Field(ge=1990, le=2100)] | None = None
    prices: dict[Annotated[str, Field(min_length=1, max_length=40)], UsdAmount]

    @field_validator("prices")
    @classmethod
    def _some_price(cls, prices: dict[str, Decimal]) -> dict[str, Decimal]:
        if not prices:
            raise ValueError("a model needs at least one storage price")
        return prices


class CatalogFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str | None = None
    currency: str = "USD"
    note: str | None = None
    grades: list[GradeIn] = Field(min_length=1)
    models: list[ModelIn] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> CatalogFile:
        if self.currency != "USD":
            raise ValueError("catalog prices are in USD")
        codes = [g.code for g in self.grades]
        if len(set(codes)) != len(codes):
            raise ValueError("duplicate grade code")
        # Sellers type brand and model in any case: they must be unique case-insensitively.
        names = [(m.brand.casefold(), m.model.casefold()) for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError("duplicate brand + model")
        return self


class StorageOption(BaseModel):
    storage: str
    base_price_usd: Decimal


class CatalogDevice(BaseModel):
    model: str
    category: DeviceCategory
    release_year: int | None
    storage_options: list[StorageOption]


class CatalogBrand(BaseModel):
    name: str
    models: list[CatalogDevice]


class GradeRead(BaseModel):
    code: str
    name: str
    description: str
    price_factor: Decimal


class CatalogRead(BaseModel):
    brands: list[CatalogBrand]
    grades: list[GradeRead]
    categories: list[DeviceCategory]
