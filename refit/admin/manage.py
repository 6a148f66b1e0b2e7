"""Operators managed by admins over the API (/api/admin/operators), beside `refit operator`:
list, create, approve, disable. An inspector is refused (403) before anything is read or
written. An admin made here works only once a second, older admin approves it."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from sqlalchemy import select

from refit import idempotency
from refit.admin import operators
from refit.admin.deps import AdminDep
from refit.admin.schemas import OperatorCreate, OperatorListed
from refit.errors import PROBLEM_CONTENT, problem_responses
from refit.models import Operator
from refit.transactions import SessionDep

router = APIRouter(prefix="/api/admin/operators", tags=["admin"])

_PROBLEMS = problem_responses(401, 403, 422)


@router.get("", response_model=list[OperatorListed], responses=_PROBLEMS)
async def list_operators(session: SessionDep, admin: AdminDep) -> list[OperatorListed]:
    rows = (await session.scalars(select(Operator).order_by(Operator.username))).all()
    return [OperatorListed.model_validate(r) for r in rows]


@router.post("", status_code=201, response_model=OperatorListed, responses=_PROBLEMS)
async def create_operator(
    body: OperatorCreate,
    request: Request,
    session: SessionDep,
    admin: AdminDep,
    idempotency_key: idempotency.IdempotencyKeyHeader = None,
) -> Response:
    """A new operator with a password the admin hands over (12+ characters); the operator
    can change it with `refit operator set-password`. A new admin cannot sign in until a
    second admin, made before it and not by its maker, approves it (`/approve`). Accepts
    `Idempotency-Key`."""
    claim = await idempotency.begin(
        session, admin.actor, idempotency_key, request, body.model_dump(exclude={"password"})
    )
    if claim.replay is not None:
        return claim.replay
    made = await operators.create_operator(
        session, body.username, body.password, body.role, created_by=admin.actor
    )
    response: Response = await idempotency.respond(
        session, claim, 201, OperatorListed.model_validate(made)
    )
    return response


@router.post(
    "/{username}/approve",
    response_model=OperatorListed,
    responses={
        **_PROBLEMS,
        403: {
            "description": "An inspector; or four_eyes_refused: the admin who made this one, "
            "or an admin made after it, cannot approve it (the refusal is audited)",
            **PROBLEM_CONTENT,
        },
    },
)
async def approve_operator(username: str, session: SessionDep, admin: AdminDep) -> OperatorListed:
    """Let an admin made by another admin sign in and act. Only a second admin made before it
    and not by its maker. Approving an operator that already works changes nothing."""
    approved = await operators.approve_operator(session, username, approver=admin)
    return OperatorListed.model_validate(approved)


@router.post("/{username}/disable", response_model=OperatorListed, responses=_PROBLEMS)
async def disable_operator(username: str, session: SessionDep, admin: AdminDep) -> OperatorListed:
    """From now on the operator's sign-ins and tokens are refused. Disabling twice is harmless."""
    disabled = await operators.disable_operator(session, username, actor=admin.actor)
    return OperatorListed.model_validate(disabled)
