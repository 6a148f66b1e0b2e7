"""Quotes are priced here, never by the client: catalog base price x grade factor in USD,
then SOL at the current rate.

The money rules (rounding down, lamports exact) are refit/money.py's.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from refit import db
from refit.catalog.schemas import storage_sort_key
from refit.errors import NotFound, Unprocessable
from refit.models.catalog import CatalogModel, CatalogVariant, ConditionGrade
from refit.models.quote import Quote
from refit.money import MAX_SOL, MAX_USD, recorded_rate, sol_to_lamports, usd_price, usd_to_sol
from refit.pricing.service import current_rate
from refit.quotes.schemas import QuoteCreate
from refit.resources import Resources


async def create_quote(
    session: AsyncSession, resources: Resources, user_id: uuid.UUID, data: QuoteCreate
) -> Quote:
    """Price the device from the catalog and the grade; store and return the quote."""
    # The rate first, before any statement: a price feed call (when the cached rate is stale)
    # then never holds the request's pooled connection or transaction open.
    rate = await current_rate(resources)
    model = await session.scalar(
        select(CatalogModel).where(
            func.lower(CatalogModel.brand) == data.device_brand.lower(),
            func.lower(CatalogModel.model) == data.device_model.lower(),
            CatalogModel.is_active,
        )
    )
    if model is None:
        raise Unprocessable(
            f"{data.device_brand} {data.device_model} is not in the catalog (GET /api/catalog)",
            code="unknown_device",
        )
    variants = (
        await session.scalars(
            select(CatalogVariant).where(
                CatalogVariant.model_id == model.id, CatalogVariant.is_active
            )
        )
    ).all()
    options = sorted((v.storage for v in variants), key=storage_sort_key)
    variant: CatalogVariant | None
    if data.storage is None:
        if len(variants) != 1:
            raise Unprocessable(
                f"{model.model} comes in several storage sizes: say which",
                code="storage_required",
                extra={"storage_options": options},
            )
        variant = variants[0]
    else:
        wanted = data.storage.replace(" ", "").lower()
        variant = next((v for v in variants if v.storage.lower() == wanted), None)
        if variant is None:
            raise Unprocessable(
                f"{model.model} has no {data.storage} option",
                code="unknown_storage",
                extra={"storage_options": options},
            )
    grade = await session.scalar(
        select(ConditionGrade).where(
            ConditionGrade.code == data.device_condition.lower(), ConditionGrade.is_active
        )
    )
    if grade is None:
        codes = (
            await session.scalars(select(ConditionGrade.code).where(ConditionGrade.is_active))
        ).all()
        raise Unprocessable(
            f"Unknown condition {data.device_condition!r}",
            code="unknown_condition",
            extra={"conditions": sorted(codes)},
        )

    price_usd = usd_price(variant.base_price_usd, grade.price_factor)
    usd_per_sol = recorded_rate(rate.usd_per_sol)
    price_sol = usd_to_sol(price_usd, usd_per_sol)
    if price_usd > MAX_USD or price_sol > MAX_SOL:
        raise Unprocessable(
            "This quote is beyond what a single order can hold", code="price_out_of_range"
        )
    now = dt.datetime.now(dt.UTC)
    quote = Quote(
        id=uuid.uuid4(),
        user_id=user_id,
        catalog_variant_id=variant.id,
        device_brand=model.brand,
        device_model=model.model,
        device_storage=variant.storage,
        device_category=model.category,
        device_condition=grade.code,
        device_details=data.device_details,
        base_price_usd=variant.base_price_usd,
        price_factor=grade.price_factor,
        price_usd=price_usd,
        price_sol=price_sol,
        price_lamports=sol_to_lamports(price_sol),
        sol_usd_rate=usd_per_sol,
        rate_source=rate.source,
        rate_timestamp=rate.published_at,
        expires_at=now + dt.timedelta(days=resources.settings.quote_ttl_days),
        created_at=now,
    )
    # The seller's role may read quotes, never write them: a quote is a price we promise.
    async with db.as_service(session):
        session.add(quote)
    return quote


async def get_quote(session: AsyncSession, quote_id: uuid.UUID) -> Quote:
    """The caller's quote (RLS hides other sellers'), else 404 quote_not_found."""
    quote = await session.scalar(select(Quote).where(Quote.id == quote_id))
    if quote is None:
        raise NotFound(f"No quote {quote_id}", code="quote_not_found")
    return quote
