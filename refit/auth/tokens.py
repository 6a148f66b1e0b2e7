"""Access tokens: short-lived JWTs whose claims drive `auth.uid()` here and on Supabase.

`sub` is users.id and `role` is `authenticated`, the claims Supabase's PostgREST reads.
Sign-out revokes a token by its `jti` until the token would have expired anyway: recorded in
PostgreSQL, carried to every API process over Redis (refit/auth/revocations.py).
"""

from __future__ import annotations

import functools
import time
import uuid
from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from refit import jwts, resources
from refit.auth import revocations
from refit.errors import ServiceUnavailable, Unauthorized
from refit.settings import Settings

AUDIENCE = "authenticated"


@dataclass(frozen=True)
class AccessToken:
    token: str
    jti: str
    expires_in: int


@dataclass(frozen=True)
class TokenClaims:
    user_id: uuid.UUID
    jti: str
    expires_at: int


def issue_access_token(settings: Settings, user_id: uuid.UUID) -> AccessToken:
    now = int(time.time())
    jti = uuid.uuid4().hex
    claims = {
        "sub": str(user_id),
        "role": "authenticated",
        "aud": AUDIENCE,
        "iss": settings.public_url,
        "iat": now,
        "exp": now + settings.access_token_ttl_seconds,
        "jti": jti,
    }
    token = jwts.encode(jwts.Key.of(settings), claims)
    return AccessToken(token=token, jti=jti, expires_in=settings.access_token_ttl_seconds)


def decode_access_token(settings: Settings, token: str) -> TokenClaims:
    """The token's claims if its signature, audience, issuer and expiry hold, else 401."""
    claims = _verified(settings.jwt_secret, settings.jwt_algorithm, settings.public_url, token)
    if claims.expires_at <= time.time():
        raise Unauthorized("The access token has expired", code="token_expired")
    return claims


# A client sends the same token with every request for its 15 minutes: its signature is
# checked once per process, not per request (it was a fifth of a read's CPU). Only tokens
# that verified are kept; the expiry is checked on every use above.
@functools.lru_cache(maxsize=65536)
def _verified(secret: str, algorithm: str, issuer: str, token: str) -> TokenClaims:
    try:
        claims = jwts.decode(
            jwts.Key(secret, algorithm, issuer),
            token,
            audience=AUDIENCE,
            required=["sub", "exp", "iat", "jti", "aud", "iss"],
        )
    except jwts.ExpiredToken as exc:
        raise Unauthorized("The access token has expired", code="token_expired") from exc
    except jwts.InvalidToken as exc:
        raise Unauthorized("The access token is not valid", code="invalid_token") from exc
    if claims.get("role") != "authenticated":
        raise Unauthorized("The access token is not valid", code="invalid_token")
    try:
        user_id = uuid.UUID(claims["sub"])
    except (ValueError, TypeError) as exc:
        raise Unauthorized("The access token is not valid", code="invalid_token") from exc
    return TokenClaims(user_id=user_id, jti=str(claims["jti"]), expires_at=int(claims["exp"]))


async def revoke(
    session: AsyncSession, redis: Redis, settings: Settings, claims: TokenClaims
) -> None:
    """Refuse the token from now on, in every API process: the row in `revoked_tokens` is the
    record (in the caller's service-role transaction), the publish tells the other processes'
    revocation watch at once. Redis failing fails the sign-out, whose transaction then rolls
    back: the seller is told to try again rather than left with a half-revoked token."""
    await session.execute(
        text(
            "INSERT INTO revoked_tokens (jti, user_id, expires_at)"
            " VALUES (:jti, :user_id, to_timestamp(:expires_at)) ON CONFLICT (jti) DO NOTHING"
        ),
        {"jti": claims.jti, "user_id": claims.user_id, "expires_at": claims.expires_at},
    )
    # Rows outlive their token by nothing useful; sign-outs are rare, so each clears some of
    # the dead. SKIP LOCKED: this transaction waits on Redis below, and a concurrent sign-out
    # must not queue behind it for the same expired rows.
    await session.execute(
        text(
            "DELETE FROM revoked_tokens WHERE jti IN (SELECT jti FROM revoked_tokens"
            " WHERE expires_at < now() LIMIT 100 FOR UPDATE SKIP LOCKED)"
        )
    )
    ttl = max(1, claims.expires_at - int(time.time()))
    await redis.set(revocations.revoked_key(settings, claims.jti), "1", ex=ttl)
    watch = revocations.current_watch()
    if watch is not None:
        watch.add(claims.jti, claims.expires_at)
    await redis.publish(revocations.channel(settings), f"{claims.jti} {claims.expires_at}")


async def ensure_not_revoked(redis: Redis, settings: Settings, claims: TokenClaims) -> None:
    """401 for a revoked token. Answered in-process while the revocation watch is live (no
    round trip); otherwise Redis is asked, and if Redis cannot say, the request is refused
    (503), never served with a possibly revoked token. A token Redis does not know is looked
    up in PostgreSQL too: Redis may have lost its keys (the reason the watch is reconnecting)."""
    watch = revocations.current_watch()
    known = watch.revoked(claims.jti) if watch is not None else None
    if known is None:
        try:
            known = bool(await redis.exists(revocations.revoked_key(settings, claims.jti)))
        except Exception as exc:
            raise ServiceUnavailable(
                "Cannot check the session right now", code="auth_unavailable"
            ) from exc
        if not known:
            known = await revocations.is_recorded(resources.current().engine, claims.jti)
    if known:
        raise Unauthorized("The access token has been revoked", code="token_revoked")
