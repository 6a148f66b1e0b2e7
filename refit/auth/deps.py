"""FastAPI dependencies for signed-in sellers.

`UserSessionDep` is the request's transaction switched to the `authenticated` role with the
caller's claims: every query made through it is filtered by Row Level Security.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import Scope

from refit import fastlane, ratelimit, resources, transactions
from refit.auth import tokens
from refit.errors import Unauthorized
from refit.logs import SELLER_ID_STATE
from refit.settings import Settings
from refit.transactions import SessionDep

_bearer = HTTPBearer(auto_error=False, description="Access token from connect-wallet")


async def admit_seller(token: str | None, state: dict[str, Any]) -> tokens.TokenClaims:
    """The one door of every signed-in seller's request, FastAPI's (`CurrentClaims`) and the
    fast lane's (refit.fastlane) alike: the token checked, its revocation, the per-seller
    request limit; `state` is the request's scope state (the access line names the seller).
    `token`: the Bearer credentials, or None when the request sent none."""
    if not token:
        raise Unauthorized("Sign in first: send Authorization: Bearer <token>", code="no_token")
    res = resources.current()
    claims = tokens.decode_access_token(res.settings, token)
    await tokens.ensure_not_revoked(res.redis, res.settings, claims)
    # For the access log line: who asked (never the token itself).
    state[SELLER_ID_STATE] = claims.user_id
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


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, as FastAPI's HTTPBearer reads
    it (scheme case-insensitive); None for no header or another scheme."""
    scheme, token = get_authorization_scheme_param(authorization)
    return token if scheme.lower() == "bearer" and token else None


async def current_claims(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> tokens.TokenClaims:
    # HTTPBearer(auto_error=False) gives None for a missing header and another scheme.
    token = credentials.credentials if credentials else None
    return await admit_seller(token, request.scope.setdefault("state", {}))


async def lane_claims(scope: Scope) -> tokens.TokenClaims:
    """`admit_seller` for a request of the fast lane (refit.fastlane)."""
    token = bearer_token(fastlane.header(scope, b"authorization"))
    return await admit_seller(token, fastlane.state(scope))


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
