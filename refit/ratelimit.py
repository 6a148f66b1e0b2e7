"""Rate limits counted in Redis with the `limits` library (a moving window: exactly N hits in
any window, across every process sharing the Redis).

Usage in an endpoint: `await enforce(request, settings.rate_limit_x, "auth.nonce", "ip", ip)`.
Over the limit it raises a 429 problem+json carrying `Retry-After` and the `RateLimit-*`
headers. Counters share the process's Redis connection pool and live under the
`REFIT_REDIS_KEY_PREFIX` (several environments or test runs can share one Redis). A limit
set to "" is off.

With Redis down (refused, timed out), `enforce()` and the sellers' limits fail open (the
request goes on, a warning is logged): they guard against abuse, and refusing every seller
while Redis is down would be an outage of its own. Never otherwise: a process whose Redis
pool stays busy past its wait (RedisPoolExhausted) or a Redis that answers with an error is
a 503 with Retry-After. `hit()` fails closed (503) unless told otherwise: the sign-in limits
use it, where an unchecked guess is the greater danger.

`take_slot()` is for a throttle on a secret (the operators' password): one Lua script takes a
slot in every window at once, or none, before the secret is checked, so guesses sent at the
same moment cannot all read "room left" first; the slot can be given back (`give_back()`)
when the secret was right. It always fails closed.
"""

from __future__ import annotations

import ipaddress
import math
import time
import uuid
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import redis.exceptions
import structlog
from fastapi import Request
from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from refit.errors import DEPENDENCY_RETRY_AFTER_SECONDS, RateLimited, ServiceUnavailable
from refit.log_setup import describe_error
from refit.resources import RedisPoolExhausted, Resources, current
from refit.script_batch import ScriptBatch

log = structlog.get_logger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Redis not there (refused, reset): the one case where the sellers' limits let a request
# through. A command that timed out is not that: under a flood the process itself is slow
# to read Redis's answer, and letting requests through then would lift the limit exactly
# when it is needed (200 requests at once on a loaded machine got 133 through): it is a
# 503, as is RedisPoolExhausted (a ConnectionError too, caught first).
_REDIS_DOWN = (redis.exceptions.ConnectionError, OSError)

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


def _unavailable(identifiers: Sequence[str], exc: BaseException) -> ServiceUnavailable:
    log.warning("ratelimit.unavailable", key="/".join(identifiers), error=describe_error(exc))
    return ServiceUnavailable(
        "Cannot check the request rate right now; try again shortly",
        code="rate_limit_unavailable",
        headers={"Retry-After": str(DEPENDENCY_RETRY_AFTER_SECONDS)},
    )


def _refusal(
    item: RateLimitItem, identifiers: Sequence[str], reset: int, remaining: int
) -> RateLimited:
    window = item.get_expiry()
    log.info("ratelimit.exceeded", key="/".join(identifiers), limit=str(item))
    return RateLimited(
        "Too many requests; try again later",
        code="rate_limited",
        headers={
            "Retry-After": str(reset),
            "RateLimit-Limit": str(item.amount),
            "RateLimit-Remaining": str(remaining),
            "RateLimit-Reset": str(reset),
            "RateLimit-Policy": f"{item.amount};w={window}",
        },
        extra={"retry_after": reset},
    )


async def hit(
    resources: Resources, limit: str, *identifiers: str, fail_closed: bool = True
) -> None:
    """Count one hit against `limit` for these identifiers; raise 429 when over it. The
    hit is counted and decided in one step (the `limits` moving window is a Lua script)."""
    if not limit:
        return
    item = parse_limit(limit)
    limiter = _limiter(resources)
    try:
        if await _acquire(resources, limiter, item, identifiers):
            return
        stats = await limiter.get_window_stats(item, *identifiers)
    except (RedisPoolExhausted, redis.exceptions.TimeoutError) as exc:
        # Our own pool ran dry, or an answer came too late (a flood of requests): letting
        # them through would lift the limit exactly when it is needed.
        raise _unavailable(identifiers, exc) from exc
    except _REDIS_DOWN as exc:
        if not fail_closed:
            log.warning("ratelimit.skipped", key="/".join(identifiers), error=describe_error(exc))
            return
        raise _unavailable(identifiers, exc) from exc
    except redis.exceptions.RedisError as exc:
        # Redis answered with an error (out of memory, read-only): not down, not counted.
        raise _unavailable(identifiers, exc) from exc
    reset = max(1, math.ceil(stats.reset_time - time.time()))
    raise _refusal(item, identifiers, reset, stats.remaining)


# One per Redis client: `limits`' own moving-window script, its runs batched.
_batches: weakref.WeakKeyDictionary[Redis, ScriptBatch] = weakref.WeakKeyDictionary()


async def _acquire(
    resources: Resources,
    limiter: MovingWindowRateLimiter,
    item: RateLimitItem,
    identifiers: Sequence[str],
) -> bool:
    """`limiter.hit(item, *identifiers)`: the same script, key and arguments (the same
    counts, shared with a process still on `limits`' own call), with the hits of requests
    arriving together sent in one pipeline (refit.script_batch): it is on every seller's
    request, and its round trip was most of its cost."""
    storage = limiter.storage
    assert isinstance(storage, RedisStorage)
    batch = _batches.get(resources.redis)
    if batch is None:
        source = storage.bridge.lua_acquire_moving_window.script  # type: ignore[attr-defined]
        batch = _batches[resources.redis] = ScriptBatch(resources.redis, source)
    key = storage.bridge.prefixed_key(item.key_for(*identifiers))
    return bool(await batch.run(key, [time.time(), item.amount, item.get_expiry(), 1]))


# KEYS: one sorted set per window, of the slots taken in it (scored by the time taken, ms).
# ARGV: the new slot's id, then per key its limit and its window (ms). All or nothing, in
# one step: a slot in every window, or none and the ms until the fullest one frees a slot
# (its 1-based position first). Redis's clock, so every process counts the same time.
_TAKE_SLOT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local refused, wait = 0, 0
for i, key in ipairs(KEYS) do
    local amount = tonumber(ARGV[i * 2])
    local window = tonumber(ARGV[i * 2 + 1])
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
    local taken = redis.call('ZCARD', key)
    if taken >= amount then
        -- The slot that must leave the window before one is free (a lowered limit leaves
        -- more than `amount` in it).
        local oldest = redis.call('ZRANGE', key, taken - amount, taken - amount, 'WITHSCORES')
        local frees_in = window
        if oldest[2] then frees_in = tonumber(oldest[2]) + window - now end
        if frees_in > wait then refused, wait = i, frees_in end
    end
end
if refused > 0 then return {refused, wait} end
for i, key in ipairs(KEYS) do
    redis.call('ZADD', key, now, ARGV[1])
    redis.call('PEXPIRE', key, tonumber(ARGV[i * 2 + 1]))
end
return {0, 0}
"""

_scripts: weakref.WeakKeyDictionary[Redis, AsyncScript] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Slot:
    """A slot taken in every window of a `take_slot()`: keys and the slot's id in them."""

    keys: tuple[str, ...]
    member: str


async def take_slot(resources: Resources, limits: Sequence[tuple[str, Sequence[str]]]) -> Slot:
    """Take one slot in each (limit, identifiers) window, all or none, in one Redis step;
    raise 429 when any of them is full (Retry-After: until the fullest frees one), and 503
    when Redis cannot say (fail closed, always). Limits set to "" are off."""
    windows = [(parse_limit(limit), tuple(ids)) for limit, ids in limits if limit]
    member = uuid.uuid4().hex
    keys = tuple(resources.redis_key("ratelimit", "slots", *ids) for _, ids in windows)
    if not windows:
        return Slot(keys, member)
    script = _scripts.get(resources.redis)
    if script is None:
        script = _scripts[resources.redis] = resources.redis.register_script(_TAKE_SLOT)
    args: list[str | int] = [member]
    for item, _ in windows:
        args += [item.amount, item.get_expiry() * 1000]
    try:
        refused, wait_ms = await script(keys=list(keys), args=args)
    except (redis.exceptions.RedisError, OSError) as exc:
        raise _unavailable(windows[0][1], exc) from exc
    if not refused:
        return Slot(keys, member)
    item, ids = windows[int(refused) - 1]
    raise _refusal(item, ids, reset=max(1, math.ceil(int(wait_ms) / 1000)), remaining=0)


async def give_back(resources: Resources, slot: Slot) -> None:
    """Free a slot `take_slot()` took (in every window). Best effort: a slot that cannot be
    given back stays counted until its window passes, which errs on the safe side."""
    if not slot.keys:
        return
    try:
        async with resources.redis.pipeline(transaction=True) as pipe:
            for key in slot.keys:
                pipe.zrem(key, slot.member)
            await pipe.execute()
    except (redis.exceptions.RedisError, OSError) as exc:
        log.warning("ratelimit.slot_kept", keys=slot.keys, error=describe_error(exc))


async def enforce(
    request: Request, limit: str, *identifiers: str, fail_closed: bool = False
) -> None:
    """`hit()` with the app's resources, for endpoints; fails open unless told otherwise
    (the sign-in limits fail closed)."""
    await hit(current(), limit, *identifiers, fail_closed=fail_closed)
