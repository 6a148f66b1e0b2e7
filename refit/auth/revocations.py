"""Revoked tokens known in-process, so checking one costs no round trip.

Sign-out records the jti in PostgreSQL (`revoked_tokens`, the record), writes
`revoked-token:<jti>` in Redis (with the token's remaining lifetime) and publishes the jti.
Every API process subscribes: once subscribed it loads the live revocations from PostgreSQL,
then adds each published one, so its set is current within the time a publish takes to
arrive. Redis losing its data (a restart without persistence, an eviction, a failover) drops
the subscription and the keys, never a revocation: the reconnected watch reloads the record.
While the subscription is not live (starting, Redis gone, a reconnect), checks ask Redis and
then PostgreSQL (tokens.ensure_not_revoked), failing closed (503) when Redis cannot answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from refit.log_setup import describe_error
from refit.settings import Settings
from refit.started import Started

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

    def __init__(self, redis: Redis, engine: AsyncEngine, settings: Settings) -> None:
        self.redis = redis
        self.engine = engine
        self.settings = settings
        self.live = False
        self._revoked: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

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
        # Also read by the loops: a cancellation swallowed on the way (see _follow) must not
        # leave the watch following, or reconnecting, for good.
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            # Bounded: a pub/sub read cancelled mid-way may not let go of its connection
            # politely (redis-py #3941); shutting down must not wait on it.
            await asyncio.wait({self._task}, timeout=STOP_SECONDS)

    async def _run(self) -> None:
        wait = 0.1
        while not self._stopping:
            try:
                await self._follow()
            except asyncio.CancelledError:
                self.live = False
                raise
            except Exception as exc:
                # Said once when a live watch is lost, not at every failed reconnect after.
                if self.live:
                    log.warning("auth.revocation_watch_lost", error=describe_error(exc))
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
            if self._stopping:
                # Stopped while subscribing: redis-py 8.1's subscribe can swallow the
                # cancellation and return as if nothing happened (measured: 7 stops in 60
                # within the first 2 ms of a start).
                return
            self.live = True
            log.info("auth.revocation_watch_live", known=len(self._revoked))
            loop = asyncio.get_running_loop()
            pinged = loop.time()
            while not self._stopping:
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
            with contextlib.suppress(Exception, asyncio.TimeoutError):
                await asyncio.wait_for(pubsub.aclose(), STOP_SECONDS)

    async def _load(self) -> None:
        # From the record, not from Redis: after Redis lost its data, its keys are gone too.
        loaded = await load_revoked(self.engine)
        self._revoked = loaded | self._revoked

    def _prune(self) -> None:
        now = time.time()
        self._revoked = {jti: exp for jti, exp in self._revoked.items() if exp > now}


async def load_revoked(engine: AsyncEngine) -> dict[str, float]:
    """jti -> expiry (epoch seconds) of every revoked token that has not expired yet."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT jti, extract(epoch FROM expires_at)::float8 FROM revoked_tokens"
                " WHERE expires_at > now()"
            )
        )
        return {jti: expires for jti, expires in rows}


async def is_recorded(engine: AsyncEngine, jti: str) -> bool:
    """Whether `jti` is recorded revoked. A request asks this while the watch is not live (it
    restarts after an outage, as PostgreSQL may have): a pooled connection that died while
    idle (API processes do not ping before use) costs a second try on a fresh one, not a
    503 (SQLAlchemy invalidated the pool's older connections on seeing it)."""
    for attempt in (1, 2):
        try:
            async with engine.connect() as conn:
                found = await conn.scalar(
                    text("SELECT EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = :jti)"),
                    {"jti": jti},
                )
            return bool(found)
        except DBAPIError as exc:
            if attempt == 2 or not exc.connection_invalidated:
                raise
    raise AssertionError("unreachable")


_watches: Started[RevocationWatch] = Started()


def current_watch() -> RevocationWatch | None:
    return _watches.current()


async def start_watch(redis: Redis, engine: AsyncEngine, settings: Settings) -> RevocationWatch:
    """Start following revocations in this process (the API's lifespan)."""
    watch = RevocationWatch(redis, engine, settings)
    _watches.add(watch).start()
    return watch


async def stop_watch(watch: RevocationWatch) -> None:
    _watches.remove(watch)
    await watch.stop()
