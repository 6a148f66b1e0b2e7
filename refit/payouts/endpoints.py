"""Operators' payout endpoints under /api/admin (an operator's token, service role)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Annotated

import structlog
from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from refit import idempotency, resources
from refit.admin.deps import AdminDep, OperatorDep, OperatorPrincipal
from refit.errors import PROBLEM_CONTENT, problem_responses
from refit.ledger.treasury import treasury_pubkey
from refit.models.payout import Payout, PayoutStatus
from refit.pagination import newest_first, page
from refit.payouts import recovery, service
from refit.payouts.schemas import PayoutPage, PayoutRead, PayoutResolve
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
    # The public key only: the API never opens the treasury's keypair (the worker's alone).
    settings = resources.current().settings
    treasury = treasury_pubkey(settings)
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
            "description": "An inspector, the admin who asked for the payout, or "
            "four_eyes_refused (an admin they made, or one made after they asked): nothing "
            "changed",
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
    it then. Only a second admin: not the one who asked for it, not made by them, and made
    before the payout was asked for (403 four_eyes_refused, audited). Approving again is a
    no-op."""
    payout = await service.approve_payout(session, payout_id, approver=operator)
    return PayoutRead.model_validate(payout)


def _way_out_responses(conflict: str) -> dict[int | str, dict[str, object]]:
    return {
        403: {
            "description": "An inspector, or an admin four-eyes refuses: nothing changed",
            **PROBLEM_CONTENT,
        },
        404: {"description": "No such payout", **PROBLEM_CONTENT},
        409: {"description": conflict, **PROBLEM_CONTENT},
    }


WayOut = Callable[[AsyncSession, uuid.UUID, OperatorPrincipal], Awaitable[Payout]]


async def _way_out(
    verb: str,
    payout_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    operator: OperatorPrincipal,
    idempotency_key: str | None,
    status_code: int,
    move: WayOut,
) -> Response:
    claim = await idempotency.begin(
        session, operator.actor, idempotency_key, request, {verb: str(payout_id)}
    )
    if claim.replay is not None:
        return claim.replay
    payout = await move(session, payout_id, operator)
    response: Response = await idempotency.respond(
        session, claim, status_code, PayoutRead.model_validate(payout)
    )
    return response


def _max_usd() -> Decimal:
    return resources.current().settings.payout_max_usd


@router.post(
    "/payouts/{payout_id}/retry",
    status_code=202,
    response_model=PayoutRead,
    responses=_way_out_responses("The payout is not failed"),
)
async def retry_payout(
    payout_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    operator: AdminDep,
    idempotency_key: idempotency.IdempotencyKeyHeader = None,
) -> Response:
    """Retry a `failed` payout: back to `pending`, its job signs a new transfer once the chain
    shows the failed one moved nothing. Above the per-payout cap, only a second admin (not the
    one who asked for the payout). Accepts `Idempotency-Key`. Admins only."""

    async def move(s: AsyncSession, pid: uuid.UUID, op: OperatorPrincipal) -> Payout:
        return await recovery.retry(s, pid, op, max_usd=_max_usd())

    return await _way_out(
        "retry", payout_id, request, session, operator, idempotency_key, 202, move
    )


@router.post(
    "/payouts/{payout_id}/cancel",
    response_model=PayoutRead,
    responses=_way_out_responses("The payout is neither failed nor held"),
)
async def cancel_payout(
    payout_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    operator: AdminDep,
    idempotency_key: idempotency.IdempotencyKeyHeader = None,
) -> Response:
    """Cancel a `failed` or `held` payout: the order waits where an admin decides again (pay
    again re-opens the payout; or send the device home). Above the per-payout cap, only a
    second admin. Accepts `Idempotency-Key`. Admins only."""

    async def move(s: AsyncSession, pid: uuid.UUID, op: OperatorPrincipal) -> Payout:
        return await recovery.cancel(s, pid, op, max_usd=_max_usd())

    return await _way_out(
        "cancel", payout_id, request, session, operator, idempotency_key, 200, move
    )


@router.post(
    "/payouts/{payout_id}/release",
    status_code=202,
    response_model=PayoutRead,
    responses=_way_out_responses("The payout is not held by sanctions screening"),
)
async def release_payout(
    payout_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    operator: AdminDep,
    idempotency_key: idempotency.IdempotencyKeyHeader = None,
) -> Response:
    """Release a payout held by sanctions screening: back to `pending`, its job screens again
    and signs. Always a second admin, whatever the amount. Accepts `Idempotency-Key`. Admins
    only."""

    async def move(s: AsyncSession, pid: uuid.UUID, op: OperatorPrincipal) -> Payout:
        return await recovery.release(s, pid, op, max_usd=_max_usd())

    return await _way_out(
        "release", payout_id, request, session, operator, idempotency_key, 202, move
    )


@router.post(
    "/payouts/{payout_id}/resolve",
    response_model=PayoutRead,
    responses={
        **_way_out_responses("The payout is not held as already on chain"),
        422: {
            "description": "The transaction is not this payout's transfer (amount, recipient)",
            **PROBLEM_CONTENT,
        },
    },
)
async def resolve_payout(
    payout_id: uuid.UUID,
    body: PayoutResolve,
    request: Request,
    session: SessionDep,
    operator: AdminDep,
    idempotency_key: idempotency.IdempotencyKeyHeader = None,
) -> Response:
    """Resolve a payout held because a transfer for its order is already on chain: the
    transfer `signature` names is recorded as the payout (finalized) and the order completes.
    Refused (422) unless it is a finalized transfer from the treasury to the payout's recipient
    of its amount. Accepts `Idempotency-Key`. Admins only."""
    # The chain and the price feed are asked before the first statement: nothing is locked
    # while they answer.
    found, rate = await recovery.read_for_resolve(resources.current(), body.signature)

    async def move(s: AsyncSession, pid: uuid.UUID, op: OperatorPrincipal) -> Payout:
        return await recovery.resolve(s, pid, op, found, signature=body.signature, rate=rate)

    return await _way_out(
        "resolve", payout_id, request, session, operator, idempotency_key, 200, move
    )


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
