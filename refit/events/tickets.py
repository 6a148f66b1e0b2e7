"""Stream tickets: what a browser's EventSource (which cannot send headers) puts in the URL
instead of the access token.

A URL ends up in proxies' and servers' logs, so what goes there is worth little: a JWT of its
own audience (never an access token, and an access token is never a ticket), for one order
and one seller, valid for a minute. It carries the access token's jti, so signing out refuses
its tickets too, and the access token's expiry, where the stream it opens ends.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import jwt

from refit.auth.tokens import TokenClaims
from refit.errors import Unauthorized
from refit.settings import Settings

AUDIENCE = "refit:order-events"
_REQUIRED = ["sub", "aud", "iss", "iat", "exp", "order_id", "session_jti", "session_exp"]


@dataclass(frozen=True)
class StreamTicket:
    token: str
    expires_in: int


def issue_ticket(settings: Settings, claims: TokenClaims, order_id: uuid.UUID) -> StreamTicket:
    """A ticket for `order_id`, made from the caller's verified access token."""
    now = int(time.time())
    # Never outlives the session it was made from.
    expires_at = min(now + settings.stream_ticket_ttl_seconds, claims.expires_at)
    payload = {
        "sub": str(claims.user_id),
        "aud": AUDIENCE,
        "iss": settings.public_url,
        "iat": now,
        "exp": expires_at,
        "order_id": str(order_id),
        "session_jti": claims.jti,
        "session_exp": claims.expires_at,
    }
    token = jwt.encode(payload, settings.jwt_secret, algorithm=settings.jwt_algorithm)
    return StreamTicket(token=token, expires_in=expires_at - now)


def decode_ticket(settings: Settings, token: str, order_id: uuid.UUID) -> TokenClaims:
    """The session a ticket for `order_id` stands for (its jti and expiry are the access
    token's, for the revocation check and the stream's end), else 401."""
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=[settings.jwt_algorithm],
            audience=AUDIENCE,
            issuer=settings.public_url,
            options={"require": _REQUIRED},
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("The stream ticket has expired", code="ticket_expired") from exc
    except jwt.PyJWTError as exc:
        raise Unauthorized("The stream ticket is not valid", code="invalid_ticket") from exc
    if claims["order_id"] != str(order_id):
        raise Unauthorized("The stream ticket is for another order", code="ticket_wrong_order")
    try:
        return TokenClaims(
            user_id=uuid.UUID(claims["sub"]),
            jti=str(claims["session_jti"]),
            expires_at=int(claims["session_exp"]),
        )
    except (ValueError, TypeError) as exc:
        raise Unauthorized("The stream ticket is not valid", code="invalid_ticket") from exc
