"""The seller's order endpoints (docs/api.md "Orders"). Every one runs under the seller's RLS
session: another seller's order id is a 404, exactly like an unknown one."""

from __future__ import annotations

import re
import uuid
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, Body, Query, Request, Response, status
from pydantic import BaseModel
from starlette.types import Scope

from refit import idempotency
from refit.auth.deps import CurrentClaims, UserSessionDep, lane_claims, seller_limit
from refit.models.order import OrderStatus
from refit.orders import offers, reads, service
from refit.orders.schemas import OrderCancel, OrderCreate, OrderDetail, OrderPage

router = APIRouter(prefix="/api/orders", tags=["orders"])

S = OrderStatus


def _actor(claims: CurrentClaims) -> str:
    return f"user:{claims.user_id}"


@router.post(
    "/create",
    status_code=status.HTTP_201_CREATED,
    response_model=OrderDetail,
    responses={409: {"description": "Quote expired or already used; Idempotency-Key reused"}},
    dependencies=[seller_limit("rate_limit_orders_per_seller", "orders.create")],
)
async def create_order(
    data: OrderCreate,
    request: Request,
    session: UserSessionDep,
    claims: CurrentClaims,
    idempotency_key: idempotency.IdempotencyKeyHeader = None,
) -> Response:
    """Turn the caller's quote into an order (one order per quote)."""
    claim = await idempotency.begin(
        session, claims.user_id, idempotency_key, request, data.model_dump(mode="json")
    )
    if claim.replay is not None:
        return claim.replay
    created = await service.create_order(session, claims.user_id, data)
    detail = reads.created_detail(created)
    return await idempotency.respond(session, claim, status.HTTP_201_CREATED, detail)


@router.get("", response_model=OrderPage)
async def list_orders(
    claims: CurrentClaims,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """The caller's orders, newest first; pass `next_cursor` back as `cursor` for more."""
    page = await reads.list_orders_json(claims.user_id, limit=limit, cursor=cursor)
    return Response(page, media_type="application/json")


@router.get("/{order_id}", response_model=OrderDetail)
async def get_order(order_id: uuid.UUID, claims: CurrentClaims) -> Response:
    return _json(await reads.seller_order_detail(claims.user_id, order_id))


# The same two GETs for the fast lane (refit.fastlane): what they do not take as it is
# (None), FastAPI's routes above answer, refusals included.
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_LIMIT = re.compile(r"[1-9][0-9]?|100")


async def lane_get_order(scope: Scope, order_id: str) -> Response | None:
    if not _UUID.fullmatch(order_id):
        return None
    claims = await lane_claims(scope)
    return _json(await reads.seller_order_detail(claims.user_id, uuid.UUID(order_id)))


async def lane_list_orders(scope: Scope, _: str) -> Response | None:
    query = _list_query(scope["query_string"])
    if query is None:
        return None
    claims = await lane_claims(scope)
    page = await reads.list_orders_json(claims.user_id, limit=query[0], cursor=query[1])
    return Response(page, media_type="application/json")


def _list_query(raw: bytes) -> tuple[int, str | None] | None:
    """limit and cursor when the query string holds nothing else, each once and valid as
    `list_orders` declares them; else None."""
    if not raw:
        return 50, None
    pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
    found = dict(pairs)
    if len(found) != len(pairs) or not found.keys() <= {"limit", "cursor"}:
        return None
    limit = found.get("limit", "50")
    cursor = found.get("cursor")
    if not _LIMIT.fullmatch(limit) or (cursor is not None and not 0 < len(cursor) <= 200):
        return None
    return int(limit), cursor


def _json(model: BaseModel) -> Response:
    # Serialised once, by pydantic's core, straight to bytes (response_model documents it).
    return Response(model.model_dump_json(), media_type="application/json")


@router.post("/{order_id}/ship", response_model=OrderDetail)
async def ship(order_id: uuid.UUID, session: UserSessionDep, claims: CurrentClaims) -> OrderDetail:
    """The seller says the device is in the mail (the label must be ready)."""
    order = await service.transition(
        session,
        order_id,
        S.SHIPPED,
        actor=_actor(claims),
        notes="seller marked the device as shipped",
        expected_from={S.AWAITING_SHIPMENT},
    )
    return await reads.order_detail(session, order)


@router.post("/{order_id}/cancel", response_model=OrderDetail)
async def cancel(
    order_id: uuid.UUID,
    session: UserSessionDep,
    claims: CurrentClaims,
    data: Annotated[OrderCancel | None, Body()] = None,
) -> OrderDetail:
    """Cancel before the device is in transit (pending, processing_shipment,
    awaiting_shipment); a label already bought is refunded."""
    order = await service.cancel_before_transit(
        session,
        order_id,
        actor=_actor(claims),
        reason=(data.reason if data else None) or "cancelled by the seller",
    )
    return await reads.order_detail(session, order)


@router.post("/{order_id}/offer/accept", response_model=OrderDetail)
async def accept_offer(order_id: uuid.UUID, session: UserSessionDep) -> OrderDetail:
    """Accept the revised offer (final_price_usd); the payout follows. The order stays
    offer_pending, with offer_accepted_at set, until it is paid."""
    order = await offers.accept_offer(session, order_id)
    return await reads.order_detail(session, order)


@router.post("/{order_id}/offer/decline", response_model=OrderDetail)
async def decline_offer(
    order_id: uuid.UUID, session: UserSessionDep, claims: CurrentClaims
) -> OrderDetail:
    """Decline the revised offer: the device is sent back."""
    order = await offers.decline_offer(session, order_id, actor=_actor(claims))
    return await reads.order_detail(session, order)
