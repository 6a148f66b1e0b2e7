"""The catalog's price for a device: its storage variant's base price x its grade's factor, in
USD. One lookup for the quote (what the seller says they have) and the inspection (what we
found), with the same 422 problems for a device, storage or grade the catalog does not know."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from refit.catalog.schemas import storage_sort_key
from refit.errors import Unprocessable
from refit.models.catalog import CatalogModel, CatalogVariant, ConditionGrade
from refit.money import usd_price


@dataclass(frozen=True)
class CatalogPrice:
    model: CatalogModel
    variant: CatalogVariant
    grade: ConditionGrade
    price_usd: Decimal


async def catalog_price(
    session: AsyncSession,
    brand: str,
    model_name: str,
    storage: str | None,
    grade_code: str,
    *,
    active_only: bool = True,
) -> CatalogPrice:
    """The USD price of `brand model` in `storage` (optional when the model has one size) and
    grade, rounded down (refit.money). `active_only=False` also prices entries dropped from
    the catalog since (an inspection of a device quoted before the drop)."""
    model = await session.scalar(
        select(CatalogModel).where(
            func.lower(CatalogModel.brand) == brand.lower(),
            func.lower(CatalogModel.model) == model_name.lower(),
            *([CatalogModel.is_active] if active_only else []),
        )
    )
    if model is None:
        raise Unprocessable(
            f"{brand} {model_name} is not in the catalog (GET /api/catalog)",
            code="unknown_device",
        )
    variants = (
        await session.scalars(
            select(CatalogVariant).where(
                CatalogVariant.model_id == model.id,
                *([CatalogVariant.is_active] if active_only else []),
            )
        )
    ).all()
    options = sorted((v.storage for v in variants), key=storage_sort_key)
    variant: CatalogVariant | None
    if storage is None:
        if len(variants) != 1:
            raise Unprocessable(
                f"{model.model} comes in several storage sizes: say which",
                code="storage_required",
                extra={"storage_options": options},
            )
        variant = variants[0]
    else:
        wanted = storage.replace(" ", "").lower()
        variant = next((v for v in variants if v.storage.lower() == wanted), None)
        if variant is None:
            raise Unprocessable(
                f"{model.model} has no {storage} option",
                code="unknown_storage",
                extra={"storage_options": options},
            )
    grade = await session.scalar(
        select(ConditionGrade).where(
            ConditionGrade.code == grade_code.lower(),
            *([ConditionGrade.is_active] if active_only else []),
        )
    )
    if grade is None:
        codes = (
            await session.scalars(select(ConditionGrade.code).where(ConditionGrade.is_active))
        ).all()
        raise Unprocessable(
            f"Unknown condition {grade_code!r}",
            code="unknown_condition",
            extra={"conditions": sorted(codes)},
        )
    return CatalogPrice(
        model=model,
        variant=variant,
        grade=grade,
        price_usd=usd_price(variant.base_price_usd, grade.price_factor),
    )
