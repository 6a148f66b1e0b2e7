"""FastAPI dependencies for signed-in sellers.

`UserSessionDep` is the request's transaction switched to the `authenticated` role with the
caller's claims: every query made through it is filtered by Row Level Security.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from refit import db, resources
from refit.auth import tokens
from refit.errors import Unauthorized
from refit.logs import SELLER_ID_STATE
from refit.resources import SessionDep

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
    return claims


CurrentClaims = Annotated[tokens.TokenClaims, Depends(current_claims)]


async def user_session(session: SessionDep, claims: CurrentClaims) -> AsyncSession:
    await db.act_as_user(session, claims.user_id)
    return session


UserSessionDep = Annotated[AsyncSession, Depends(user_session)]
