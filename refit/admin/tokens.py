"""Operators' access tokens: JWTs signed with REFIT_JWT_SECRET under an audience of their own.

The audience keeps the two kinds apart: a seller's token (audience `authenticated`) is refused
here, an operator's is refused by `refit.auth.tokens` on every seller endpoint. The token says
who; what the operator may do is read from their row on each request (`deps.py`), so
disabling one takes effect at once.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from refit import jwts
from refit.errors import Unauthorized
from refit.models import Operator
from refit.settings import Settings

AUDIENCE = "refit-operator"


@dataclass(frozen=True)
class OperatorToken:
    token: str
    expires_in: int


def unauthorized(detail: str) -> Unauthorized:
    return Unauthorized(detail, code="operator_unauthorized")


def issue_operator_token(settings: Settings, operator: Operator) -> OperatorToken:
    now = int(time.time())
    ttl = settings.operator_token_ttl_seconds
    claims = {
        "sub": str(operator.id),
        "role": str(operator.role),
        "aud": AUDIENCE,
        "iss": settings.public_url,
        "iat": now,
        "exp": now + ttl,
        "jti": uuid.uuid4().hex,
    }
    token = jwts.encode(jwts.Key.of(settings), claims)
    return OperatorToken(token=token, expires_in=ttl)


def decode_operator_token(settings: Settings, token: str) -> uuid.UUID:
    """The operator id the token was issued to, if its signature, audience, issuer and expiry
    hold; else 401 operator_unauthorized."""
    try:
        claims = jwts.decode(
            jwts.Key.of(settings),
            token,
            audience=AUDIENCE,
            required=["sub", "exp", "iat", "aud", "iss"],
        )
        return uuid.UUID(claims["sub"])
    except jwts.ExpiredToken as exc:
        raise unauthorized("The operator token has expired; sign in again") from exc
    except (jwts.InvalidToken, ValueError, TypeError) as exc:
        raise unauthorized("The operator token is not valid") from exc
