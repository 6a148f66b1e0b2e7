"""Rate limits counted in Redis with the `limits` library (a moving window: exactly N hits in
any window, across every process sharing the Redis).

Usage in an endpoint: `await enforce(request, settings.rate_limit_x, "auth.nonce", "ip", ip)`.
Over the limit it raises a 429 problem+json carrying `Retry-After` and the `RateLimit-*`
headers. Counters share the process's Redis connection pool and live under the
`REFIT_REDIS_KEY_PREFIX` (several environments or test runs can share one Redis). A limit
set to "" is off.

Without Redis, `enforce()` and the sellers' limits fail open (the request goes on, a warning
is logged): they guard against abuse, and refusing every seller while Redis is down would be
an outage of its own. `hit()` fails closed (503) unless told otherwise: the operator login
uses it, where an unchecked guess is the greater danger.
"""

from __future__ import annotations

import ipaddress
import math
import time
import weakref
from functools import lru_cache

import structlog
from fastapi import Request
from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import Redis

from refit.errors import RateLimited, ServiceUnavailable
from refit.resources import Resources, current

log = structlog.get_logger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# One limiter per Redis client (so per process, per test): built on first use.
_limiters: weakref.WeakKeyDictionary[Redis, MovingWindowRateLimiter] = weakref.WeakKeyDictionary()


@lru_cache(maxsize=256)
def parse_limit(limit: str) -> RateLimitItem:
    """ "10/minute", "100 per hour" ... (the `limits` notation)."""
    return parse(limit)


def _limiter(resources: Resources) -> MovingWindowRateLimiter:
    limiter = _limiters.get(resources.redis)
    if limiter is None:
        storage = RedisStorage(
            "async+redis://",
            implementation="redispy",
            connection_pool=resources.redis.connection_pool,  # type: ignore[arg-type]
            # ":mw": the moving window keeps a list where the earlier sliding-window counters
            # kept strings; other names keep a rolling deploy off WRONGTYPE errors.
            key_prefix=resources.redis_key("ratelimit:mw"),
        )
        limiter = MovingWindowRateLimiter(storage)
        _limiters[resources.redis] = limiter
    return limiter


@lru_cache(maxsize=16)
def _networks(trusted: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in trusted)


def _is_trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_ip(request: Request) -> str:
    """The caller's address: the TCP peer, unless the peer is one of REFIT_TRUSTED_PROXIES;
    then the right-most X-Forwarded-For entry that is not a trusted proxy. Entries left of
    it were written by the client and could name anyone: a limit keyed on them could be
    dodged by rotating them, or aimed at someone else's bucket by copying theirs."""
    peer = request.client.host if request.client else "unknown"
    networks = _networks(tuple(current().settings.trusted_proxies))
    if not networks or not _is_trusted(peer, networks):
        return peer
    hops = [
        hop.strip()
        for header in request.headers.getlist("x-forwarded-for")
        for hop in header.split(",")
        if hop.strip()
    ]
    for hop in reversed(hops):
        if not _is_trusted(hop, networks):
            return hop
    # Every hop is one of ours (a health check from inside): the first one is the origin.
    return hops[0] if hops else peer


async def hit(
    resources: Resources, limit: str, *identifiers: str, fail_closed: bool = True
) -> None:
    """Count one hit against `limit` for these identifiers; raise 429 when over it."""
    if not limit:
        return
    item = parse_limit(limit)
    limiter = _limiter(resources)
    try:
        allowed = await limiter.hit(item, *identifiers)
        if allowed:
            return
        stats = await limiter.get_window_stats(item, *identifiers)
    except Exception as exc:
        log.warning(
            "ratelimit.unavailable",
            key="/".join(identifiers),
            fail_closed=fail_closed,
            error=repr(exc),
        )
        if not fail_closed:
            return
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
    """`hit()` with the app's resources, for endpoints; fails open."""
    await hit(current(), limit, *identifiers, fail_closed=False)
