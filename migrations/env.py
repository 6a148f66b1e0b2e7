"""Alembic runs on the same psycopg 3 driver as the app.

The URL is `config.attributes["database_url"]` when called from code (refit.migrate), else
REFIT_DATABASE_URL.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from refit import db
from refit.settings import get_settings

config = context.config
target_metadata = db.Base.metadata


def _url() -> str:
    url = config.attributes.get("database_url") or get_settings().database_url
    if not url:
        raise RuntimeError("no database URL: set REFIT_DATABASE_URL or use `refit migrate`")
    return db.sqlalchemy_url(url)


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = db.create_engine(_url(), pool_size=1, max_overflow=0)
    async with engine.connect() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_async())
