"""POST /api/admin/login: an operator's username and password for an access token."""

from __future__ import annotations

import structlog
from fastapi import APIRouter, Request

from refit import ratelimit, resources
from refit.admin import throttle, tokens
from refit.admin.schemas import OperatorLogin, OperatorRead, OperatorSession
from refit.errors import PROBLEM_CONTENT, Unauthorized, problem_responses
from refit.transactions import SessionDep

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/api/admin", tags=["admin"])


@router.post(
    "/login",
    response_model=OperatorSession,
    responses={
        **problem_responses(401, 429),
        403: {
            "description": "operator_awaiting_approval: an admin made by another admin, until "
            "a second admin approves it",
            **PROBLEM_CONTENT,
        },
    },
)
async def login(body: OperatorLogin, request: Request, session: SessionDep) -> OperatorSession:
    """Public, throttled. An operator's access token. An unknown username, a wrong password and
    a disabled operator get the same 401 invalid_credentials; too many failures for the
    username or from the address, a 429 with Retry-After, whatever the password. The right
    password of an admin no second admin has approved yet: 403 operator_awaiting_approval."""
    res = resources.current()
    username, ip = body.username.strip().lower(), ratelimit.client_ip(request)
    operator = await throttle.authenticate(session, body.username, body.password, ip)
    if operator is None:
        log.info("admin.login_failed", username=username[:64], ip=ip)
        raise Unauthorized("Wrong username or password", code="invalid_credentials")
    issued = tokens.issue_operator_token(res.settings, operator)
    log.info("admin.login", operator_id=str(operator.id), ip=ip)
    return OperatorSession(
        access_token=issued.token,
        expires_in=issued.expires_in,
        operator=OperatorRead.model_validate(operator),
    )
