"""Access tokens: short-lived JWTs whose claims drive `auth.uid()` here and on Supabase.

`sub` is users.id and `role` is `authenticated`, the claims Supabase's PostgREST reads.
Sign-out revokes a token by its `jti` in Redis until the token would have expired anyway.
"""

from __future__ import annotations

import functools
import time
import uuid
from dataclasses import dataclass

import jwt
from redis.asyncio import Redis

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
    token = jwt.encode(claims, settings.jwt_secret, algorithm=settings.jwt_algorithm)
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
        claims = jwt.decode(
            token,
            secret,
            algorithms=[algorithm],
            audience=AUDIENCE,
            issuer=issuer,
            options={"require": ["sub", "exp", "iat", "jti", "aud", "iss"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("The access token has expired", code="token_expired") from exc
    except jwt.PyJWTError as exc:
        raise Unauthorized("The access token is not valid", code="invalid_token") from exc
    if claims.get("role") != "authenticated":
        raise Unauthorized("The access token is not valid", code="invalid_token")
    try:
        user_id = uuid.UUID(claims["sub"])
    except (ValueError, TypeError) as exc:
        raise Unauthorized("The access token is not valid", code="invalid_token") from exc
    return TokenClaims(user_id=user_id, jti=str(claims["jti"]), expires_at=int(claims["exp"]))


async def revoke(redis: Redis, settings: Settings, claims: TokenClaims) -> None:
    """Refuse the token from now on, in every API process: the Redis key is the record, the
    publish tells the other processes' revocation watch at once."""
    ttl = max(1, claims.expires_at - int(time.time()))
    await redis.set(revocations.revoked_key(settings, claims.jti), "1", ex=ttl)
    watch = revocations.current_watch()
    if watch is not None:
        watch.add(claims.jti, claims.expires_at)
    await redis.publish(revocations.channel(settings), f"{claims.jti} {claims.expires_at}")


async def ensure_not_revoked(redis: Redis, settings: Settings, claims: TokenClaims) -> None:
    """401 for a revoked token. Answered in-process while the revocation watch is live;
    otherwise Redis is asked, and if Redis cannot say, the request is refused (503), never
    served with a possibly revoked token."""
    watch = revocations.current_watch()
    known = watch.revoked(claims.jti) if watch is not None else None
    if known is None:
        try:
            known = bool(await redis.exists(revocations.revoked_key(settings, claims.jti)))
        except Exception as exc:
            raise ServiceUnavailable(
                "Cannot check the session right now", code="auth_unavailable"
            ) from exc
    if known:
        raise Unauthorized("The access token has been revoked", code="token_revoked")
