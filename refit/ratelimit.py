"""Rate limits counted in Redis with the `limits` library (sliding window counters).

Usage in an endpoint: `await enforce(request, settings.rate_limit_x, "auth.nonce", "ip", ip)`.
Over the limit it raises a 429 problem+json carrying `Retry-After` and the `RateLimit-*`
headers. Counters share the process's Redis connection pool and live under the
`REFIT_REDIS_KEY_PREFIX` (several environments or test runs can share one Redis).
"""

from __future__ import annotations

import math
import time
import weakref
from functools import lru_cache

import structlog
from fastapi import Request
from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from redis.asyncio import Redis

from refit.errors import RateLimited, ServiceUnavailable
from refit.resources import Resources, current

log = structlog.get_logger(__name__)

# One limiter per Redis client (so per process, per test): built on first use.
_limiters: weakref.WeakKeyDictionary[Redis, SlidingWindowCounterRateLimiter] = (
    weakref.WeakKeyDictionary()
)


@lru_cache(maxsize=256)
def parse_limit(limit: str) -> RateLimitItem:
    """ "10/minute", "100 per hour" ... (the `limits` notation)."""
    return parse(limit)


def _limiter(resources: Resources) -> SlidingWindowCounterRateLimiter:
    limiter = _limiters.get(resources.redis)
    if limiter is None:
        storage = RedisStorage(
            "async+redis://",
            implementation="redispy",
            connection_pool=resources.redis.connection_pool,  # type: ignore[arg-type]
            key_prefix=resources.redis_key("ratelimit"),
        )
        limiter = SlidingWindowCounterRateLimiter(storage)
        _limiters[resources.redis] = limiter
    return limiter


def client_ip(request: Request) -> str:
    """The caller's address. Behind a proxy, run uvicorn with --proxy-headers and
    --forwarded-allow-ips so this is the client's, not the proxy's."""
    return request.client.host if request.client else "unknown"


async def hit(resources: Resources, limit: str, *identifiers: str) -> None:
    """Count one hit against `limit` for these identifiers; raise 429 when over it."""
    item = parse_limit(limit)
    limiter = _limiter(resources)
    try:
        allowed = await limiter.hit(item, *identifiers)
        if allowed:
            return
        stats = await limiter.get_window_stats(item, *identifiers)
    except Exception as exc:
        # Fail closed, like token revocation: without Redis we cannot tell abuse from use.
        log.warning("ratelimit.unavailable", error=repr(exc))
        raise ServiceUnavailable(
            "Cannot check the request rate right now", code="rate_limit_unavailable"
        ) from exc
    reset = max(1, math.ceil(stats.reset_time - time.time()))
    window = item.get_expiry()
    log.info("ratelimit.exceeded", key="/".join(identifiers), limit=str(item))
    raise RateLimited(
        "Too many requests; try again later",
        code="rate_limited",
        headers={
            "Retry-After": str(reset),
            "RateLimit-Limit": str(item.amount),
            "RateLimit-Remaining": str(stats.remaining),
            "RateLimit-Reset": str(reset),
            "RateLimit-Policy": f"{item.amount};w={window}",
        },
        extra={"retry_after": reset},
    )


async def enforce(request: Request, limit: str, *identifiers: str) -> None:
    """`hit()` with the app's resources, for endpoints."""
    await hit(current(), limit, *identifiers)
