"""POST /api/quotes, GET /api/quotes/{id}."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, status

from refit import resources
from refit.auth.deps import CurrentClaims, UserSessionDep, seller_limit
from refit.quotes import service
from refit.quotes.schemas import QuoteCreate, QuoteRead

router = APIRouter(prefix="/api/quotes", tags=["quotes"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=QuoteRead,
    dependencies=[seller_limit("rate_limit_quotes_per_seller", "quotes.create")],
)
async def create_quote(
    data: QuoteCreate, request: Request, session: UserSessionDep, claims: CurrentClaims
) -> QuoteRead:
    """Price a device: USD locked until expires_at, SOL at the current rate."""
    quote = await service.create_quote(session, resources.current(), claims.user_id, data)
    return QuoteRead.model_validate(quote)


@router.get("/{quote_id}", response_model=QuoteRead)
async def get_quote(quote_id: uuid.UUID, session: UserSessionDep) -> QuoteRead:
    return QuoteRead.model_validate(await service.get_quote(session, quote_id))
