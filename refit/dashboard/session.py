"""The dashboard's cookie session and its CSRF tokens.

The cookie holds a JWT of its own audience (an operator's API token is refused here and this
cookie is refused by /api/admin): who signed in, and a session id. What the operator may do
is read from their row on every request, as for API tokens, so disabling one takes effect at
once. Signing out records the time on the operator's row (read with it, no extra round trip):
every dashboard session of theirs issued until then is refused, in PostgreSQL, so a sign-out
survives Redis losing its data.

CSRF: every form carries an HMAC of the session id (synchronizer token); the sign-in form,
which has no session yet, a random token also set in a cookie (double submit).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Response
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from refit import jwts, resources
from refit.admin.deps import OperatorPrincipal
from refit.errors import ProblemError
from refit.models import Operator, OperatorRole
from refit.settings import Settings
from refit.transactions import SessionDep

AUDIENCE = "refit-dashboard"
COOKIE = "refit_dashboard"
LOGIN_CSRF_COOKIE = "refit_dashboard_login"
PATH = "/admin"
_CSRF_PURPOSE = b"refit.dashboard.csrf.v1"


class SignInRequired(ProblemError):
    """No session, or one that expired, was signed out or belongs to a disabled operator."""

    status, code = 401, "sign_in_required"


class Forbidden(ProblemError):
    status, code = 403, "operator_forbidden"


def _secure(settings: Settings) -> bool:
    # Production is served over HTTPS; the dev server and tests over plain HTTP on loopback.
    return settings.is_production or settings.public_url.startswith("https://")


def issue(settings: Settings, response: Response, operator: Operator) -> None:
    """Set the session cookie of a fresh sign-in."""
    now = int(time.time())
    ttl = settings.operator_token_ttl_seconds
    claims = {
        "sub": str(operator.id),
        "sid": secrets.token_urlsafe(18),
        "aud": AUDIENCE,
        "iss": settings.public_url,
        "iat": now,
        "exp": now + ttl,
    }
    token = jwts.encode(jwts.Key.of(settings), claims)
    response.set_cookie(
        COOKIE,
        token,
        max_age=ttl,
        path=PATH,
        httponly=True,
        samesite="lax",
        secure=_secure(settings),
    )


def _claims(settings: Settings, token: str) -> dict[str, str | int]:
    try:
        claims: dict[str, str | int] = jwts.decode(
            jwts.Key.of(settings),
            token,
            audience=AUDIENCE,
            required=["sub", "sid", "exp", "aud", "iss", "iat"],
        )
    except jwts.InvalidToken as exc:
        raise SignInRequired("Your session has expired; sign in again") from exc
    return claims


async def sign_out(session: AsyncSession, operator_id: uuid.UUID, response: Response) -> None:
    """End the operator's dashboard sessions: the cookie here, and every session issued until
    now on the server (the sign-out time on their row, in the request's transaction)."""
    await session.execute(
        update(Operator)
        .where(Operator.id == operator_id)
        .values(dashboard_signed_out_at=func.now())
    )
    response.delete_cookie(COOKIE, path=PATH)


async def _session_id(request: Request) -> tuple[uuid.UUID, str, int]:
    res = resources.current()
    token = request.cookies.get(COOKIE)
    if not token:
        raise SignInRequired("Sign in to use the dashboard")
    claims = _claims(res.settings, token)
    try:
        return uuid.UUID(str(claims["sub"])), str(claims["sid"]), int(claims["iat"])
    except ValueError as exc:
        raise SignInRequired("Your session is not valid; sign in again") from exc


def csrf_token(settings: Settings, sid: str) -> str:
    key = hmac.new(settings.jwt_secret.encode(), _CSRF_PURPOSE, hashlib.sha256).digest()
    return hmac.new(key, sid.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class DashboardOperator(OperatorPrincipal):
    """The signed-in operator, with the CSRF token their forms carry."""

    csrf: str = ""

    @property
    def is_admin(self) -> bool:
        return self.role is OperatorRole.ADMIN


async def current_operator(request: Request, session: SessionDep) -> DashboardOperator:
    operator_id, sid, issued_at = await _session_id(request)
    row = (
        await session.execute(
            select(
                Operator.username,
                Operator.role,
                Operator.disabled_at,
                Operator.dashboard_signed_out_at,
                Operator.approved_at,
            ).where(Operator.id == operator_id)
        )
    ).one_or_none()
    if row is None or row.disabled_at is not None:
        raise SignInRequired("This operator account is disabled or no longer exists")
    if row.approved_at is None:
        raise SignInRequired("This admin account is waiting for a second admin's approval")
    signed_out = row.dashboard_signed_out_at
    # Whole seconds (a JWT's iat): a session issued in the very second of a sign-out is
    # refused too, and its operator signs in again.
    if signed_out is not None and issued_at <= signed_out.timestamp():
        raise SignInRequired("You signed out; sign in again")
    operator = DashboardOperator(
        id=operator_id,
        username=row.username,
        role=row.role,
        csrf=csrf_token(resources.current().settings, sid),
    )
    request.state.operator = operator
    if request.method not in ("GET", "HEAD"):
        await _check_csrf(request, operator.csrf)
    return operator


async def _check_csrf(request: Request, expected: str) -> None:
    # Forms are parsed once (Starlette caches them), so the endpoint reads the same one.
    sent = (await request.form()).get("csrf")
    if not isinstance(sent, str) or not hmac.compare_digest(sent, expected):
        raise ProblemError(
            "This form has expired or did not come from the dashboard; reload and try again",
            status=403,
            code="csrf_failed",
        )


async def check_login_csrf(request: Request) -> None:
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    sent = (await request.form()).get("csrf")
    if not cookie or not isinstance(sent, str) or not hmac.compare_digest(sent, cookie):
        raise ProblemError(
            "This sign-in form has expired; reload the page and try again",
            status=403,
            code="csrf_failed",
        )


def new_login_csrf(request: Request) -> str:
    """The sign-in form's token: the one already in the browser's cookie, or a new one."""
    return request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)


def set_login_csrf(response: Response, token: str) -> None:
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        max_age=3600,
        path=PATH,
        httponly=True,
        samesite="strict",
        secure=_secure(resources.current().settings),
    )


async def current_admin(
    operator: Annotated[DashboardOperator, Depends(current_operator)],
) -> DashboardOperator:
    if not operator.is_admin:
        raise Forbidden("Only an admin may do this; nothing was changed")
    return operator


OperatorDep = Annotated[DashboardOperator, Depends(current_operator)]
AdminDep = Annotated[DashboardOperator, Depends(current_admin)]
