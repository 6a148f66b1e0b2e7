"""`POST /api/orders/{id}/continue`: a seller goes on with an imported order that was still
open (refit.localstorage.continuing). In the orders tag and URL space, served from here: it
uses the quotes domain, which the orders core never imports."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, status

from refit import resources
from refit.auth.deps import CurrentClaims, UserSessionDep, seller_limit
from refit.errors import problem_responses
from refit.localstorage import continuing
from refit.orders import reads
from refit.orders.schemas import OrderContinue, OrderDetail

orders_router = APIRouter(prefix="/api/orders", tags=["orders"])


@orders_router.post(
    "/{order_id}/continue",
    status_code=status.HTTP_201_CREATED,
    response_model=OrderDetail,
    responses=problem_responses(404, 409, 422, 429),
    dependencies=[
        seller_limit("rate_limit_quotes_per_seller", "quotes.create"),
        seller_limit("rate_limit_orders_per_seller", "orders.create"),
    ],
)
async def continue_order(
    order_id: uuid.UUID,
    session: UserSessionDep,
    claims: CurrentClaims,
    data: Annotated[OrderContinue | None, Body()] = None,
) -> OrderDetail:
    """Go on with an imported order that was still open: a new quote, priced now for the
    same device and condition, and a new `pending` order from it. The imported order is
    linked to it (`continued_as_id`); a second continue is a 409 `already_continued`."""
    order = await continuing.continue_imported(
        session, resources.current(), claims.user_id, order_id, data or OrderContinue()
    )
    return await reads.order_detail(session, order)
