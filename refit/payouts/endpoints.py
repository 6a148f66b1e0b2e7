"""Operators' payout endpoints under /api/admin (an operator's token, service role)."""

from __future__ import annotations

import uuid
from typing import Annotated

import structlog
from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import select

from refit import idempotency, resources
from refit.admin.deps import AdminDep, OperatorDep
from refit.errors import PROBLEM_CONTENT, problem_responses
from refit.ledger.treasury import load_treasury
from refit.models.payout import Payout, PayoutStatus
from refit.pagination import newest_first, page
from refit.payouts import service
from refit.payouts.schemas import PayoutPage, PayoutRead
from refit.transactions import SessionDep

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/api/admin", tags=["admin"])


@router.post(
    "/orders/{order_id}/pay",
    status_code=202,
    response_model=PayoutRead,
    responses={
        403: {"description": "An inspector: admins only; nothing changed", **PROBLEM_CONTENT},
        404: {"description": "No such order", **PROBLEM_CONTENT},
        409: {"description": "The order is not waiting for its payout", **PROBLEM_CONTENT},
    },
)
async def pay_order(
    order_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    operator: AdminDep,
    idempotency_key: idempotency.IdempotencyKeyHeader = None,
) -> Response:
    """Pay the seller in SOL for an order inspected as quoted, or whose revised offer the
    seller accepted: one payout per order however often this is asked (a job signs, sends
    and waits for finality; the order becomes completed then). Accepts `Idempotency-Key`.
    Admins only."""
    # The keypair file is read before the first statement: no file I/O under a lock.
    settings = resources.current().settings
    treasury = load_treasury(settings).pubkey()
    claim = await idempotency.begin(
        session, operator.actor, idempotency_key, request, {"order_id": str(order_id)}
    )
    if claim.replay is not None:
        return claim.replay
    payout = await service.request_payout(
        session,
        order_id,
        treasury=treasury,
        requested_by=operator.actor,
        max_usd=settings.payout_max_usd,
    )
    response: Response = await idempotency.respond(
        session, claim, 202, PayoutRead.model_validate(payout)
    )
    return response


@router.post(
    "/payouts/{payout_id}/approve",
    status_code=202,
    response_model=PayoutRead,
    responses={
        403: {
            "description": "An inspector, or the admin who asked for the payout: nothing changed",
            **PROBLEM_CONTENT,
        },
        404: {"description": "No such payout", **PROBLEM_CONTENT},
        409: {"description": "The payout is not awaiting approval", **PROBLEM_CONTENT},
    },
)
async def approve_payout(
    payout_id: uuid.UUID, session: SessionDep, operator: AdminDep
) -> PayoutRead:
    """Approve a payout over the per-payout cap (`awaiting_approval`): its job signs and sends
    it then. Only another admin than the one who asked for it. Approving again is a no-op."""
    payout = await service.approve_payout(session, payout_id, approver=operator)
    return PayoutRead.model_validate(payout)


@router.get("/payouts", response_model=PayoutPage, responses=problem_responses(400, 401))
async def list_payouts(
    session: SessionDep,
    operator: OperatorDep,
    status: PayoutStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> PayoutPage:
    """Every payout, newest first, optionally only those in one status; `?limit=&cursor=`
    pages through them (`next_cursor` of one page is the `cursor` of the next)."""
    query = select(Payout)
    if status is not None:
        query = query.where(Payout.status == status)
    rows = await session.scalars(newest_first(query, Payout, limit=limit, cursor=cursor))
    payouts, next_cursor = page(rows.all(), limit)
    return PayoutPage(
        items=[PayoutRead.model_validate(p) for p in payouts], next_cursor=next_cursor
    )
