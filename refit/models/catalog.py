"""The device catalog: models, their storage variants with a base price, condition grades."""

from __future__ import annotations

import uuid
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    Text,
    UniqueConstraint,
    func,
    text,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from refit.db import Base
from refit.models.base import Timestamps, UUIDPrimaryKey


class DeviceCategory(StrEnum):
    # Decides the parcel the label is bought for.
    PHONE = "phone"
    TABLET = "tablet"
    LAPTOP = "laptop"
    WATCH = "watch"


class CatalogModel(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "catalog_models"
    # Unique case-insensitively: the index uq_catalog_models_lower_brand_lower_model.
    __table_args__ = (
        Index(
            "uq_catalog_models_lower_brand_lower_model",
            func.lower(text("brand")),
            func.lower(text("model")),
            unique=True,
        ),
    )

    brand: Mapped[str] = mapped_column(Text, nullable=False)
    model: Mapped[str] = mapped_column(Text, nullable=False)
    category: Mapped[str] = mapped_column(Text, nullable=False)
    release_year: Mapped[int | None] = mapped_column(Integer)
    # Dropped from the catalog file: kept (quotes refer to it) but no longer quoted.
    is_active: Mapped[bool] = mapped_column(Boolean, server_default=true(), nullable=False)

    variants: Mapped[list[CatalogVariant]] = relationship(back_populates="model", lazy="raise")


class CatalogVariant(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "catalog_variants"
    __table_args__ = (UniqueConstraint("model_id", "storage"),)

    model_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("catalog_models.id", ondelete="CASCADE"), nullable=False
    )
    storage: Mapped[str] = mapped_column(Text, nullable=False)
    base_price_usd: Mapped[Decimal] = mapped_column(Numeric(10, 2), nullable=False)
    is_active: Mapped[bool] = mapped_column(Boolean, server_default=true(), nullable=False)

    model: Mapped[CatalogModel] = relationship(back_populates="variants", lazy="raise")


class ConditionGrade(Timestamps, Base):
    __tablename__ = "condition_grades"

    code: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    # What the seller reads when choosing: plain language, checkable by them.
    description: Mapped[str] = mapped_column(Text, nullable=False)
    # Share of the base price paid in this grade (0..1).
    price_factor: Mapped[Decimal] = mapped_column(Numeric(5, 4), nullable=False)
    sort_order: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    is_active: Mapped[bool] = mapped_column(Boolean, server_default=true(), nullable=False)
