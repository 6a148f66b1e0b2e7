"""POST /api/admin/login: an operator's username and password for an access token."""

from __future__ import annotations

import structlog
from fastapi import APIRouter, Request

from refit import ratelimit, resources
from refit.admin import operators, tokens
from refit.admin.schemas import OperatorLogin, OperatorRead, OperatorSession
from refit.errors import RateLimited, ServiceUnavailable, Unauthorized, problem_responses
from refit.resources import Resources, SessionDep

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/api/admin", tags=["admin"])

_LOGIN = "admin.login"


def _limits(res: Resources, username: str, ip: str) -> list[tuple[str, tuple[str, ...]]]:
    # Per username alone, whatever the address: a password guessed from many addresses is
    # still five tries. The price is that a stranger can lock an operator out for a window,
    # which an operator can live with and a seller's sign-in could not.
    settings = res.settings
    return [
        (settings.rate_limit_operator_login_per_username, (_LOGIN, "username", username)),
        (settings.rate_limit_operator_login_per_ip, (_LOGIN, "ip", ip)),
    ]


async def _refuse_if_over(res: Resources, limit: str, identifiers: tuple[str, ...]) -> None:
    item = ratelimit.parse_limit(limit)
    try:
        # A test, not a hit: only failures count (below).
        allowed = await ratelimit._limiter(res).test(item, *identifiers)
    except Exception as exc:
        # Fail closed, as ratelimit.hit does: without Redis, guessing would be unlimited.
        raise ServiceUnavailable(
            "Cannot check the request rate right now", code="rate_limit_unavailable"
        ) from exc
    if not allowed:
        # Over the limit, a hit is refused without counting: the usual 429 with Retry-After.
        await ratelimit.hit(res, limit, *identifiers)


async def _count_failure(res: Resources, limit: str, identifiers: tuple[str, ...]) -> None:
    try:
        await ratelimit.hit(res, limit, *identifiers)
    except RateLimited:
        # Another attempt filled the window meanwhile: this one was let in, it is answered as
        # it deserves; the next is refused.
        pass


@router.post(
    "/login",
    response_model=OperatorSession,
    responses=problem_responses(401, 429),
)
async def login(body: OperatorLogin, request: Request, session: SessionDep) -> OperatorSession:
    """Public, throttled. An operator's access token. An unknown username, a wrong password and
    a disabled operator get the same 401 invalid_credentials; too many failures for the
    username or from the address, a 429 with Retry-After, whatever the password."""
    res = resources.current()
    username, ip = body.username.strip().lower(), ratelimit.client_ip(request)
    limits = _limits(res, username, ip)
    for limit, identifiers in limits:
        await _refuse_if_over(res, limit, identifiers)
    operator = await operators.authenticate(session, body.username, body.password)
    if operator is None:
        for limit, identifiers in limits:
            await _count_failure(res, limit, identifiers)
        log.info("admin.login_failed", username=username[:64], ip=ip)
        raise Unauthorized("Wrong username or password", code="invalid_credentials")
    issued = tokens.issue_operator_token(res.settings, operator)
    log.info("admin.login", operator_id=str(operator.id), ip=ip)
    return OperatorSession(
        access_token=issued.token,
        expires_in=issued.expires_in,
        operator=OperatorRead.model_validate(operator),
    )
