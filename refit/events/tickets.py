"""Stream tickets: what a browser's EventSource (which cannot send headers) puts in the URL
instead of the access token.

A URL ends up in proxies' and servers' logs, so what goes there is worth little: a JWT of its
own audience (never an access token, and an access token is never a ticket), for one order
and one seller, valid for a minute. It carries the access token's jti, so signing out refuses
its tickets too, and the access token's expiry, where the stream it opens ends.

And a ticket opens one stream: `redeem_ticket` claims its id in Redis with one SET NX, so of
any number of openings at once exactly one wins (one ticket opened 150 streams before). A
browser's EventSource reconnects with the same URL; that retry is refused, and the page asks
for a new ticket and resumes with Last-Event-ID, as it already must after a minute.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import redis.exceptions

from refit import jwts
from refit.auth import tokens
from refit.auth.tokens import TokenClaims
from refit.errors import DEPENDENCY_RETRY_AFTER_SECONDS, ServiceUnavailable, Unauthorized
from refit.resources import Resources
from refit.settings import Settings

AUDIENCE = "refit:order-events"
_REQUIRED = ["sub", "aud", "iss", "iat", "exp", "jti", "order_id", "session_jti", "session_exp"]


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
        # The ticket's own id, what redeeming it claims: inside the signature, where the
        # token's text (whose base64 has more than one spelling) could not be.
        "jti": uuid.uuid4().hex,
        "order_id": str(order_id),
        "session_jti": claims.jti,
        "session_exp": claims.expires_at,
    }
    token = jwts.encode(jwts.Key.of(settings), payload)
    return StreamTicket(token=token, expires_in=expires_at - now)


@dataclass(frozen=True)
class _Ticket:
    session: TokenClaims
    jti: str
    expires_at: int


async def redeem_ticket(res: Resources, token: str, order_id: uuid.UUID) -> TokenClaims:
    """The session a ticket for `order_id` stands for (its jti and expiry are the access
    token's, for the stream's end), claimed once: 401 for a ticket that is not valid, for
    another order, expired, of a revoked session or used before; 503 when Redis cannot say
    (never opened unchecked)."""
    ticket = _decode(res.settings, token, order_id)
    # The session first: a revoked session's ticket hears token_revoked, used or not.
    await tokens.ensure_not_revoked(res.redis, res.settings, ticket.session)
    # Kept until the ticket expires by itself (a second or more: it must outlive any opening
    # that could still get past the expiry check).
    ttl = max(ticket.expires_at - int(time.time()), 0) + 1
    try:
        claimed = await res.redis.set(
            res.redis_key("events", "ticket_used", ticket.jti), "1", nx=True, ex=ttl
        )
    except (redis.exceptions.RedisError, OSError) as exc:
        raise ServiceUnavailable(
            "Cannot check the stream ticket right now; try again shortly",
            code="ticket_unavailable",
            headers={"Retry-After": str(DEPENDENCY_RETRY_AFTER_SECONDS)},
        ) from exc
    if not claimed:
        raise Unauthorized(
            "The stream ticket was already used; ask for a new one", code="ticket_used"
        )
    return ticket.session


def _decode(settings: Settings, token: str, order_id: uuid.UUID) -> _Ticket:
    try:
        claims = jwts.decode(jwts.Key.of(settings), token, audience=AUDIENCE, required=_REQUIRED)
    except jwts.ExpiredToken as exc:
        raise Unauthorized("The stream ticket has expired", code="ticket_expired") from exc
    except jwts.InvalidToken as exc:
        raise Unauthorized("The stream ticket is not valid", code="invalid_ticket") from exc
    if claims["order_id"] != str(order_id):
        raise Unauthorized("The stream ticket is for another order", code="ticket_wrong_order")
    try:
        session = TokenClaims(
            user_id=uuid.UUID(claims["sub"]),
            jti=str(claims["session_jti"]),
            expires_at=int(claims["session_exp"]),
        )
        return _Ticket(session=session, jti=str(claims["jti"]), expires_at=int(claims["exp"]))
    except (ValueError, TypeError) as exc:
        raise Unauthorized("The stream ticket is not valid", code="invalid_ticket") from exc
