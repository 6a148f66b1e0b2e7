"""FastAPI dependencies for signed-in sellers.

`UserSessionDep` is the request's transaction switched to the `authenticated` role with the
caller's claims: every query made through it is filtered by Row Level Security.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from refit import ratelimit, resources, transactions
from refit.auth import tokens
from refit.errors import Unauthorized
from refit.logs import SELLER_ID_STATE
from refit.settings import Settings
from refit.transactions import SessionDep

_bearer = HTTPBearer(auto_error=False, description="Access token from connect-wallet")


async def current_claims(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> tokens.TokenClaims:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("Sign in first: send Authorization: Bearer <token>", code="no_token")
    res = resources.current()
    claims = tokens.decode_access_token(res.settings, credentials.credentials)
    await tokens.ensure_not_revoked(res.redis, res.settings, claims)
    # For the access log line: who asked (never the token itself).
    setattr(request.state, SELLER_ID_STATE, claims.user_id)
    # Every signed-in request counts, before any connection is taken: the one Redis round
    # trip the plan's per-seller limit costs (after the revocation check, so a revoked token
    # hears 401, not 429).
    await ratelimit.hit(
        res,
        res.settings.rate_limit_seller_requests,
        "seller",
        str(claims.user_id),
        fail_closed=False,
    )
    return claims


CurrentClaims = Annotated[tokens.TokenClaims, Depends(current_claims)]


def seller_limit(setting: str, name: str) -> Any:
    """A route dependency counting one hit of the seller's against the limit in the setting
    (read per request, so a changed setting applies at once). As a route's `dependencies=`,
    it runs before the endpoint's own, so before its transaction takes a connection."""
    assert setting in Settings.model_fields, setting

    async def limited(claims: CurrentClaims) -> None:
        res = resources.current()
        await ratelimit.hit(
            res, getattr(res.settings, setting), name, str(claims.user_id), fail_closed=False
        )

    return Depends(limited)


async def user_session(session: SessionDep, claims: CurrentClaims) -> AsyncSession:
    await transactions.act_as_user(session, claims.user_id)
    return session


UserSessionDep = Annotated[AsyncSession, Depends(user_session)]
