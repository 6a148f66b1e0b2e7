"""Revoked tokens known in-process, so checking one costs no round trip.

Sign-out writes `revoked-token:<jti>` in Redis (with the token's remaining lifetime) and
publishes the jti. Every API process subscribes: once subscribed it loads the revocations
already in Redis, then adds each published one, so its set is current within the time a
publish takes to arrive. While the subscription is not live (starting, Redis gone, a
reconnect), checks go to Redis directly, which fails closed (503): a revoked token is never
let in because the subscription was down.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog
from redis.asyncio import Redis

from refit.settings import Settings

log = structlog.get_logger(__name__)

RECONNECT_MAX_SECONDS = 5.0
STOP_SECONDS = 1.0
IDLE_SECONDS = 30.0


def revoked_key(settings: Settings, jti: str) -> str:
    return f"{settings.redis_key_prefix}revoked-token:{jti}"


def channel(settings: Settings) -> str:
    return f"{settings.redis_key_prefix}revoked-tokens"


class RevocationWatch:
    """The process's view of revoked tokens: jti -> the token's expiry (epoch seconds)."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.live = False
        self._revoked: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    def revoked(self, jti: str) -> bool | None:
        """True or False while live; None when only Redis itself can say."""
        if not self.live:
            return None
        return jti in self._revoked

    def add(self, jti: str, expires_at: float) -> None:
        self._revoked[jti] = expires_at

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="auth.revocation_watch")

    async def stop(self) -> None:
        self.live = False
        if self._task is not None:
            self._task.cancel()
            # Bounded: a pub/sub read cancelled mid-way may not let go of its connection
            # politely (redis-py #3941); shutting down must not wait on it.
            await asyncio.wait({self._task}, timeout=STOP_SECONDS)

    async def _run(self) -> None:
        wait = 0.1
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.live:
                    log.warning("auth.revocation_watch_lost", error=repr(exc))
                self.live = False
                await asyncio.sleep(wait)
                wait = min(wait * 2, RECONNECT_MAX_SECONDS)
            else:
                wait = 0.1

    async def _follow(self) -> None:
        pubsub = self.redis.pubsub()
        try:
            # Subscribed first, loaded second: a revocation published in between is seen by
            # one of the two, never by neither.
            await pubsub.subscribe(channel(self.settings))
            await self._load()
            self.live = True
            log.info("auth.revocation_watch_live", known=len(self._revoked))
            loop = asyncio.get_running_loop()
            pinged = loop.time()
            while True:
                message = await pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=IDLE_SECONDS
                )
                if message is None:
                    # Quiet (or the answer to our ping, which redis-py swallows): a ping now
                    # and then makes a dead connection show itself as an error.
                    if loop.time() - pinged >= IDLE_SECONDS:
                        self._prune()
                        await pubsub.ping()
                        pinged = loop.time()
                    continue
                jti, _, expires = str(message["data"]).partition(" ")
                self.add(jti, float(expires or time.time() + 86400))
        finally:
            self.live = False
            with contextlib.suppress(Exception, asyncio.TimeoutError):
                await asyncio.wait_for(pubsub.aclose(), STOP_SECONDS)

    async def _load(self) -> None:
        prefix = revoked_key(self.settings, "")
        now = time.time()
        loaded: dict[str, float] = {}
        async for key in self.redis.scan_iter(match=prefix + "*", count=1000):
            ttl = await self.redis.ttl(key)
            loaded[str(key)[len(prefix) :]] = now + max(ttl, 1)
        self._revoked = loaded | self._revoked

    def _prune(self) -> None:
        now = time.time()
        self._revoked = {jti: exp for jti, exp in self._revoked.items() if exp > now}


_watch: RevocationWatch | None = None


def current_watch() -> RevocationWatch | None:
    return _watch


async def start_watch(redis: Redis, settings: Settings) -> RevocationWatch:
    """Start following revocations in this process (the API's lifespan)."""
    global _watch
    _watch = RevocationWatch(redis, settings)
    _watch.start()
    return _watch


async def stop_watch() -> None:
    global _watch
    if _watch is not None:
        await _watch.stop()
        _watch = None
