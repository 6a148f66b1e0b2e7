"""Quotes are priced here, never by the client: catalog base price x grade factor in USD
(refit/catalog/prices.py, shared with the inspection), then SOL at the current rate.

The money rules (rounding down, lamports exact) are refit/money.py's.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from refit import transactions
from refit.catalog.prices import catalog_price
from refit.errors import NotFound, Unprocessable
from refit.models.quote import Quote
from refit.money import MAX_SOL, MAX_USD, recorded_rate, sol_to_lamports, usd_to_sol
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
    found = await catalog_price(
        session, data.device_brand, data.device_model, data.storage, data.device_condition
    )
    model, variant, grade, price_usd = found.model, found.variant, found.grade, found.price_usd
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
    async with transactions.as_service(session):
        session.add(quote)
    return quote


async def get_quote(session: AsyncSession, quote_id: uuid.UUID) -> Quote:
    """The caller's quote (RLS hides other sellers'), else 404 quote_not_found."""
    quote = await session.scalar(select(Quote).where(Quote.id == quote_id))
    if quote is None:
        raise NotFound(f"No quote {quote_id}", code="quote_not_found")
    return quote
