"""Quotes are priced here, never by the client: catalog base price x grade factor in USD,
then SOL at the current rate.

Rounding always goes down (ROUND_DOWN): we never promise more than we pay. USD to the cent
(numeric(10, 2)), SOL to 0.0001 (numeric(10, 4)), and lamports are exactly price_sol x 10^9,
so the SOL a seller is shown and the lamports it stands for are the same amount.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal, localcontext

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from refit.catalog.schemas import storage_sort_key
from refit.errors import NotFound, Unprocessable
from refit.models.catalog import CatalogModel, CatalogVariant, ConditionGrade
from refit.models.quote import Quote
from refit.pricing.service import current_rate
from refit.quotes.schemas import QuoteCreate
from refit.resources import Resources

USD_STEP = Decimal("0.01")
# numeric(20, 8): the rate is recorded at this precision and SOL computed from the recorded
# value, so the stored rate reproduces the stored SOL amount exactly.
RATE_STEP = Decimal("0.00000001")
SOL_STEP = Decimal("0.0001")
LAMPORTS_PER_SOL = 10**9
# The columns' limits: numeric(10, 2) and numeric(10, 4).
MAX_USD = Decimal("99999999.99")
MAX_SOL = Decimal("999999.9999")


def usd_price(base_price_usd: Decimal, price_factor: Decimal) -> Decimal:
    return (base_price_usd * price_factor).quantize(USD_STEP, rounding=ROUND_DOWN)


def usd_to_sol(usd: Decimal, usd_per_sol: Decimal) -> Decimal:
    # Enough digits that the quotient is exact well past the 4th decimal before rounding.
    with localcontext() as ctx:
        ctx.prec = 50
        return (usd / usd_per_sol).quantize(SOL_STEP, rounding=ROUND_DOWN)


def sol_to_lamports(sol: Decimal) -> int:
    lamports = sol * LAMPORTS_PER_SOL
    if lamports != lamports.to_integral_value():
        raise ValueError(f"{sol} SOL is not a whole number of lamports")
    return int(lamports)


async def create_quote(
    session: AsyncSession, resources: Resources, user_id: uuid.UUID, data: QuoteCreate
) -> Quote:
    """Price the device from the catalog and the grade; store and return the quote."""
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
    rate = await current_rate(resources)
    usd_per_sol = rate.usd_per_sol.quantize(RATE_STEP, rounding=ROUND_HALF_EVEN)
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
    session.add(quote)
    await session.flush()
    return quote


async def get_quote(session: AsyncSession, quote_id: uuid.UUID) -> Quote:
    """The caller's quote (RLS hides other sellers'), else 404 quote_not_found."""
    quote = await session.scalar(select(Quote).where(Quote.id == quote_id))
    if quote is None:
        raise NotFound(f"No quote {quote_id}", code="quote_not_found")
    return quote
