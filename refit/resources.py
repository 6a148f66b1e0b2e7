"""The process's long-lived connections, opened once by the API or the worker.

Jobs reach them through `current()`; endpoints through `request.app.state.resources`.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from refit import db
from refit.settings import Settings

_current: Resources | None = None


@dataclass
class Resources:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: Redis

    def redis_key(self, *parts: object) -> str:
        return self.settings.redis_key_prefix + ":".join(str(p) for p in parts)


async def open_resources(settings: Settings) -> Resources:
    global _current
    assert settings.database_url and settings.redis_url, "URLs resolved before opening"
    engine = db.create_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
    )
    redis = Redis.from_url(settings.redis_url, decode_responses=True)
    _current = Resources(
        settings=settings,
        engine=engine,
        sessionmaker=db.create_sessionmaker(engine),
        redis=redis,
    )
    return _current


async def close_resources(resources: Resources) -> None:
    global _current
    await resources.redis.aclose()
    await resources.engine.dispose()
    if _current is resources:
        _current = None


def current() -> Resources:
    if _current is None:
        raise RuntimeError("resources are not open in this process")
    return _current
