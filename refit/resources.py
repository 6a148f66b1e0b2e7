"""The process's long-lived connections, opened once by the API or the worker: the engine, its
sessionmaker (drawn on by `refit.transactions` only) and Redis.

One way in: `current()`. Endpoints take it as `ResourcesDep`, jobs and services call it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import redis.exceptions
from fastapi import Depends
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from refit import db
from refit.hot_path import HotPath
from refit.settings import Settings

_current: Resources | None = None

# A Redis that stops answering without closing the connection (a network partition, a host
# gone) would hold a request forever: it fails after this instead and is answered 503. Our
# commands take well under a millisecond; the pub/sub reads of revocations set their own.
REDIS_CONNECT_TIMEOUT_SECONDS = 2.0
REDIS_COMMAND_TIMEOUT_SECONDS = 5.0


class RedisPoolExhausted(redis.exceptions.ConnectionError):
    """No pooled Redis connection came free within the pool's wait: this process is busier
    than its pool, while Redis itself may be fine. Answered 503 like an outage (it is a
    ConnectionError), but never a reason to fail open: a limiter that let requests through
    whenever its own pool ran dry gave way exactly under a flood (200 at once, all served)."""


class RedisPool(BlockingConnectionPool):
    """A connection pool where a command finding every connection busy waits for one (the
    default pool refuses at once, MaxConnectionsError), and a wait that runs out is told
    apart from Redis being down."""

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        try:
            return await super().get_connection(*args, **kwargs)
        except redis.exceptions.ConnectionError as exc:
            # The pool's wait running out is the one ConnectionError raised here from a
            # TimeoutError; connecting to a Redis that is down raises without that cause.
            if isinstance(exc.__cause__, TimeoutError):
                raise RedisPoolExhausted(
                    f"no Redis connection free within {self.timeout} s"
                    f" ({self.max_connections} in use)"
                ) from exc
            raise


def redis_pool_size(settings: Settings) -> int:
    """REFIT_REDIS_MAX_CONNECTIONS, else one per request or job the process works on at once
    (what its database pool allows), and two held for good (the revocation subscription,
    and one spare)."""
    if settings.redis_max_connections:
        return settings.redis_max_connections
    return settings.db_pool_size + settings.db_max_overflow + settings.worker_concurrency + 2


@dataclass
class Resources:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: Redis
    hot_path: HotPath

    def redis_key(self, *parts: object) -> str:
        return self.settings.redis_key_prefix + ":".join(str(p) for p in parts)


async def open_resources(settings: Settings, *, ping_before_use: bool = True) -> Resources:
    """Open the process's connections. API-only processes pass `ping_before_use=False`
    (see `db.create_engine`)."""
    global _current
    assert settings.database_url and settings.redis_url, "URLs resolved before opening"
    engine = db.create_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        prepared_statements=settings.db_prepared_statements,
        ping_before_use=ping_before_use,
        timeouts=db.Timeouts.from_settings(settings),
    )
    pool = RedisPool.from_url(
        settings.redis_url,
        max_connections=redis_pool_size(settings),
        timeout=settings.redis_pool_timeout_seconds,
        decode_responses=True,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT_SECONDS,
        socket_timeout=REDIS_COMMAND_TIMEOUT_SECONDS,
    )
    redis = Redis.from_pool(pool)  # the client owns the pool: aclose() closes both
    _current = Resources(
        settings=settings,
        engine=engine,
        sessionmaker=db.create_sessionmaker(engine),
        redis=redis,
        hot_path=HotPath(settings),
    )
    return _current


async def close_resources(resources: Resources) -> None:
    global _current
    await resources.redis.aclose()
    await resources.hot_path.close()
    await resources.engine.dispose()
    if _current is resources:
        _current = None


def current() -> Resources:
    if _current is None:
        raise RuntimeError("resources are not open in this process")
    return _current


ResourcesDep = Annotated[Resources, Depends(current)]
