"""Who is calling /api/admin: an operator's Bearer token (from POST /api/admin/login), checked
against the operator's row on every request.

No token, a seller's token, an expired or forged one, or the token of an operator disabled
since is 401 `operator_unauthorized` before anything is read or written; an inspector on an
admin-only endpoint is 403 `operator_forbidden`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select

from refit import resources
from refit.admin import tokens
from refit.errors import ProblemError
from refit.logs import OPERATOR_ID_STATE
from refit.models import Operator, OperatorRole
from refit.transactions import SessionDep

_bearer = HTTPBearer(auto_error=False, description="Operator access token from /api/admin/login")


class AwaitingApproval(ProblemError):
    """An admin made by another admin, before a second admin approved it: no sign-in, and
    any token it holds is refused (refit/admin/four_eyes.py)."""

    status, code = 403, "operator_awaiting_approval"

    def __init__(self) -> None:
        super().__init__(
            "This admin account is waiting for a second admin's approval; "
            "until then it cannot sign in or act"
        )


@dataclass(frozen=True)
class OperatorPrincipal:
    id: uuid.UUID
    username: str
    role: OperatorRole

    @property
    def actor(self) -> str:
        """As the order's history and idempotency keys name the operator."""
        return f"operator:{self.id}"


async def current_operator(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> OperatorPrincipal:
    if credentials is None:
        raise tokens.unauthorized(
            "Operator sign-in required: send Authorization: Bearer <token from /api/admin/login>"
        )
    settings = resources.current().settings
    operator_id = tokens.decode_operator_token(settings, credentials.credentials)
    # One primary-key read in the request's own transaction: a disabled operator's token stops
    # working at once, and the role is the one the row has now.
    row = (
        await session.execute(
            select(
                Operator.username, Operator.role, Operator.disabled_at, Operator.approved_at
            ).where(Operator.id == operator_id)
        )
    ).one_or_none()
    if row is None or row.disabled_at is not None:
        raise tokens.unauthorized("This operator account is disabled or no longer exists")
    if row.approved_at is None:
        raise AwaitingApproval
    # The access-log line names who asked (refit.logs).
    setattr(request.state, OPERATOR_ID_STATE, operator_id)
    return OperatorPrincipal(id=operator_id, username=row.username, role=row.role)


OperatorDep = Annotated[OperatorPrincipal, Depends(current_operator)]
"""Any enabled operator (inspector or admin)."""


async def current_admin(operator: OperatorDep) -> OperatorPrincipal:
    if operator.role != OperatorRole.ADMIN:
        raise ProblemError(
            "Only an admin operator may do this", status=403, code="operator_forbidden"
        )
    return operator


AdminDep = Annotated[OperatorPrincipal, Depends(current_admin)]
"""An enabled operator with the admin role; an inspector gets 403 operator_forbidden."""
