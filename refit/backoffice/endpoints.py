"""The operators' order API that belongs to no one domain (docs/api.md "Operators"): the list
and search, the whole story of one order, and an admin's cancel (orders' own door,
`cancel_before_transit`). The domains' own operator moves are theirs: inspection/endpoints.py,
shipping/admin.py, payouts/endpoints.py.

Operators run as the service role; every move is written to the order's history as
`operator:<id>`. Writes accept an `Idempotency-Key` (the first response is replayed).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, Response

from refit import idempotency, resources
from refit.admin.deps import AdminDep, OperatorDep
from refit.backoffice import reads
from refit.backoffice.schemas import AdminOrderDetail, AdminOrderPage
from refit.errors import PROBLEM_CONTENT, problem_responses
from refit.models import OrderStatus
from refit.orders import follow_ups
from refit.orders.schemas import OrderCancel
from refit.orders.service import cancel_before_transit
from refit.shipping.schemas import OrderJobQueued
from refit.transactions import SessionDep

router = APIRouter(prefix="/api/admin/orders", tags=["admin"])


def _problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """401: no or a bad operator token; 403: an inspector where an admin is needed."""
    return problem_responses(401, *statuses)


@router.get("", response_model=AdminOrderPage, responses=_problems(400, 422))
async def list_orders(
    session: SessionDep,
    operator: OperatorDep,
    status: OrderStatus | None = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> AdminOrderPage:
    """Every seller's orders, newest first, optionally in one status. `q` matches part of the
    order number, tracking number or email, or the start of the wallet address."""
    return await reads.list_orders(session, status=status, q=q, limit=limit, cursor=cursor)


@router.get("/{order_id}", response_model=AdminOrderDetail, responses=_problems(404))
async def get_order_story(
    order_id: uuid.UUID, session: SessionDep, operator: OperatorDep
) -> AdminOrderDetail:
    """The whole story: seller, address, label fields, tracking events, history with its
    actors, inspection, evidence (signed photo URLs) and `attention_reason`."""
    return await reads.order_story(session, resources.current().settings, order_id)


@router.post(
    "/{order_id}/cancel",
    response_model=OrderJobQueued,
    responses={
        403: {"description": "An inspector: admins only; nothing changed", **PROBLEM_CONTENT},
        404: {"description": "No such order", **PROBLEM_CONTENT},
        409: {
            "description": "The device is already on its way (invalid_transition)",
            **PROBLEM_CONTENT,
        },
    },
)
async def cancel_order(
    order_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    operator: AdminDep,
    data: Annotated[OrderCancel | None, Body()] = None,
    idempotency_key: idempotency.IdempotencyKeyHeader = None,
) -> Response:
    """Cancel an order before its device is in transit (pending, processing_shipment,
    awaiting_shipment); a label bought or being bought is refunded by the job in `job_id`.
    Accepts `Idempotency-Key`. Admins only."""
    reason = data.reason if data else None
    claim = await idempotency.begin(
        session,
        operator.actor,
        idempotency_key,
        request,
        {"order_id": str(order_id), "reason": reason},
    )
    if claim.replay is not None:
        return claim.replay
    order = await cancel_before_transit(
        session, order_id, actor=operator.actor, reason=reason or "cancelled by an operator"
    )
    job_id = await follow_ups.waiting_job(session, follow_ups.REFUND_LABEL, order.id)
    body = OrderJobQueued(order_id=order.id, status=order.status, job_id=job_id)
    response: Response = await idempotency.respond(session, claim, 200, body)
    return response
